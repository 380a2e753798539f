//! The Workload API's codec: prost, except that a request body that does not decode is the
//! caller's error (`InvalidArgument`), not the service's (`Internal`, tonic's default).

use prost::Message;
use tonic::Status;
use tonic::codec::{BufferSettings, Codec, DecodeBuf, Decoder};
use tonic_prost::{ProstCodec, ProstDecoder, ProstEncoder};

/// [`ProstCodec`] whose decoding failures are `InvalidArgument`. Used on both ends of the
/// Workload API, so a client reading a response that does not decode sees that code too.
#[derive(Debug, Clone)]
pub struct WorkloadCodec<T, U>(ProstCodec<T, U>);

impl<T, U> Default for WorkloadCodec<T, U> {
    fn default() -> Self {
        Self(ProstCodec::default())
    }
}

impl<T, U> Codec for WorkloadCodec<T, U>
where
    T: Message + Send + 'static,
    U: Message + Default + Send + 'static,
{
    type Encode = T;
    type Decode = U;
    type Encoder = ProstEncoder<T>;
    type Decoder = WorkloadDecoder<U>;

    fn encoder(&mut self) -> Self::Encoder {
        self.0.encoder()
    }

    fn decoder(&mut self) -> Self::Decoder {
        WorkloadDecoder(self.0.decoder())
    }
}

/// Decodes with prost; a message that does not decode is `InvalidArgument`.
#[derive(Debug)]
pub struct WorkloadDecoder<U>(ProstDecoder<U>);

impl<U: Message + Default> Decoder for WorkloadDecoder<U> {
    type Item = U;
    type Error = Status;

    fn decode(&mut self, src: &mut DecodeBuf<'_>) -> Result<Option<U>, Status> {
        // prost's decoder fails only on a message that does not decode.
        self.0.decode(src).map_err(|s| {
            Status::invalid_argument(format!("request does not decode: {}", s.message()))
        })
    }

    fn buffer_settings(&self) -> BufferSettings {
        self.0.buffer_settings()
    }
}
