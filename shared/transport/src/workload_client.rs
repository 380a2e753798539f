//! A Workload API client over a Unix socket, adding the security header to every call. Used
//! by `trustdeck-agent api ...`, by downstream servers to get their own SVID from a local
//! agent, and by tests and benchmarks.

use std::path::{Path, PathBuf};

use tonic::metadata::MetadataValue;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::Channel;
use tonic::{Request, Status};
use trustdeck_proto::WORKLOAD_HEADER;
use trustdeck_proto::workload::spiffe_workload_api_client::SpiffeWorkloadApiClient;

/// Adds `workload.spiffe.io: true`.
#[derive(Clone, Copy, Debug, Default)]
pub struct Header;

impl tonic::service::Interceptor for Header {
    fn call(&mut self, mut req: Request<()>) -> Result<Request<()>, Status> {
        req.metadata_mut()
            .insert(WORKLOAD_HEADER, MetadataValue::from_static("true"));
        Ok(req)
    }
}

/// A Workload API client.
pub type WorkloadClient = SpiffeWorkloadApiClient<InterceptedService<Channel, Header>>;

/// Connects (lazily) to the Workload API at `socket`.
pub fn connect(socket: &Path) -> Result<WorkloadClient, tonic::transport::Error> {
    let ch = crate::connect::uds_channel(socket)?;
    Ok(SpiffeWorkloadApiClient::with_interceptor(ch, Header))
}

/// The socket named by `SPIFFE_ENDPOINT_SOCKET` (`unix:///path` or a plain path).
pub fn socket_from_env() -> Option<PathBuf> {
    let v = std::env::var("SPIFFE_ENDPOINT_SOCKET").ok()?;
    let p = v
        .strip_prefix("unix://")
        .or_else(|| v.strip_prefix("unix:"))
        .unwrap_or(&v);
    Some(PathBuf::from(p))
}
