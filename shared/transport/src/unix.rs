//! Accepting connections on a local (Unix) socket for tonic: a backoff when descriptors run
//! out, and a cap on what one uid may hold open.

use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::mpsc;
use tokio_stream::StreamExt;
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::server::{Connected, UdsConnectInfo};

use crate::limits::{AcceptBackoff, BurstLog, UidCounter, UidPermit};

/// Accepts connections on a Unix socket for tonic, backing off when accepting fails (no
/// descriptors left) instead of spinning; `name` names the socket in the warning.
pub fn unix_incoming(
    listener: UnixListener,
    name: &'static str,
) -> ReceiverStream<Result<UnixStream, std::io::Error>> {
    let (tx, rx) = mpsc::channel(16);
    tokio::spawn(async move {
        let accept_failed = BurstLog::new("accept failed");
        let mut backoff = AcceptBackoff::default();
        while !tx.is_closed() {
            match listener.accept().await {
                Ok((s, _)) => {
                    backoff.succeeded();
                    if tx.send(Ok(s)).await.is_err() {
                        break;
                    }
                }
                Err(e) => {
                    accept_failed.note(&format_args!("{name}: {e}"));
                    tokio::time::sleep(backoff.failed()).await;
                }
            }
        }
    });
    ReceiverStream::new(rx)
}

/// A connection holding one of its uid's places, telling tonic `C` about its peer (by
/// default what tonic knows of a Unix socket peer; see [`unix_incoming_per_uid`]).
pub struct UidStream<C = UdsConnectInfo> {
    inner: UnixStream,
    info: C,
    _place: UidPermit,
}

impl<C> UidStream<C> {
    /// A connection that holds `place` until it is dropped.
    pub fn new(inner: UnixStream, info: C, place: UidPermit) -> Self {
        Self {
            inner,
            info,
            _place: place,
        }
    }
}

impl<C: Clone + Send + Sync + 'static> Connected for UidStream<C> {
    type ConnectInfo = C;

    fn connect_info(&self) -> C {
        self.info.clone()
    }
}

impl<C: Unpin> AsyncRead for UidStream<C> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<C: Unpin> AsyncWrite for UidStream<C> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

/// The peer's uid, or one shared placeholder for a peer without credentials.
pub fn peer_uid(s: &UnixStream) -> u32 {
    s.peer_cred().map_or(u32::MAX, |c| c.uid())
}

/// [`unix_incoming`] where a uid holding `per_uid.max()` connections has its next one closed
/// at accept (logged once per burst), so a socket any local user may open cannot have its
/// daemon's descriptors taken by one of them. `info` tells tonic about each accepted peer
/// (`None` refuses it: the connection is closed).
pub fn unix_incoming_per_uid<C>(
    listener: UnixListener,
    name: &'static str,
    per_uid: UidCounter,
    info: impl Fn(&UnixStream) -> Option<C> + Send + 'static,
) -> impl tokio_stream::Stream<Item = std::io::Result<UidStream<C>>> {
    let over = BurstLog::new("connections refused: the caller's uid holds the most it may open");
    unix_incoming(listener, name).filter_map(move |c| match c {
        Ok(inner) => {
            let uid = peer_uid(&inner);
            let Some(place) = per_uid.acquire(uid) else {
                over.note(&format_args!("{name}, uid {uid}"));
                return None;
            };
            let info = info(&inner)?;
            Some(Ok(UidStream::new(inner, info, place)))
        }
        Err(e) => Some(Err(e)),
    })
}

/// What tonic knows of a Unix socket peer, for [`unix_incoming_per_uid`].
pub fn uds_info(s: &UnixStream) -> Option<UdsConnectInfo> {
    Some(s.connect_info())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;
    use tokio::io::AsyncReadExt;

    #[tokio::test]
    async fn a_uid_over_its_cap_has_its_next_connection_closed_and_freed_places_return() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.sock");
        let listener = UnixListener::bind(&path).unwrap();
        let mut incoming = Box::pin(unix_incoming_per_uid(
            listener,
            "test",
            UidCounter::new(2),
            uds_info,
        ));
        // Served as tonic would: the stream is driven all the time.
        let (tx, mut served) = mpsc::channel(8);
        tokio::spawn(async move {
            while let Some(s) = incoming.next().await {
                if tx.send(s).await.is_err() {
                    break;
                }
            }
        });
        let a = UnixStream::connect(&path).await.unwrap();
        let held_a = served.recv().await.unwrap().unwrap();
        let _b = UnixStream::connect(&path).await.unwrap();
        let _held_b = served.recv().await.unwrap().unwrap();
        // The third is accepted and closed at once: its reader sees the end.
        let mut c = UnixStream::connect(&path).await.unwrap();
        let mut buf = [0u8; 1];
        let read = tokio::time::timeout(Duration::from_secs(10), c.read(&mut buf)).await;
        assert_eq!(read.expect("the third connection is closed").unwrap(), 0);
        drop((a, held_a));
        let _d = UnixStream::connect(&path).await.unwrap();
        let held_d = tokio::time::timeout(Duration::from_secs(10), served.recv())
            .await
            .expect("a freed place is given to the next connection")
            .unwrap()
            .unwrap();
        assert_eq!(
            held_d.connect_info().peer_cred.map(|c| c.uid()),
            Some(peer_uid(&c))
        );
    }
}
