//! The console's only network code: one `Watch` stream per daemon of the fleet, reopened with
//! backoff when it breaks, and `GetNode` calls for the detail pane. Everything received is
//! handed over as an [`Update`]; nothing here interprets it.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;
use tonic::transport::Channel;
use trustdeck_process::clock::Clock;
use trustdeck_proto::admin::observe_client::ObserveClient;
use trustdeck_proto::admin::{GetNodeRequest, NodeDetail, WatchMessage, WatchRequest};
use trustdeck_proto::workload::{X509svidRequest, X509svidResponse};
use trustdeck_spiffe::pem::PemError;
use trustdeck_topology::DaemonConn;
use trustdeck_transport::tls::TlsError;
use trustdeck_transport::{SharedIdentity, SharedRoots};

use crate::app::DetailError;
use crate::fleetfile::{Endpoint, Target};

/// Largest message accepted from a daemon (a snapshot chunk of a big fleet).
pub const MAX_MESSAGE: usize = 64 << 20;
/// Longest wait between reconnection attempts.
pub const MAX_BACKOFF: Duration = Duration::from_secs(3);
/// How long a `GetNode` call for the detail popup may take.
pub const DETAIL_TIMEOUT: Duration = Duration::from_secs(5);

/// What the streams deliver.
#[derive(Debug)]
pub enum Update {
    /// A message from daemon `usize`'s stream.
    Stream(usize, WatchMessage),
    /// The console's connection to daemon `usize` changed.
    Conn(usize, DaemonConn),
    /// The answer to a [`Watcher::fetch_detail`].
    Detail(String, Result<NodeDetail, DetailError>),
}

/// Why the client could not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ClientError {
    /// An admin endpoint cannot be dialled.
    #[error("{endpoint}: {source}")]
    Endpoint {
        /// The socket path or `host:port`.
        endpoint: String,
        source: tonic::transport::Error,
    },
    /// The TLS configuration for an mTLS endpoint could not be built.
    #[error("{addr}: {source}")]
    Tls { addr: String, source: TlsError },
    /// An mTLS endpoint, but the console has no SVID.
    #[error(
        "client identity: {addr} is an mTLS endpoint: give the console an SVID with --workload-socket or SPIFFE_ENDPOINT_SOCKET"
    )]
    NoIdentity { addr: String },
    /// The console's SVID could not be taken from the Workload API.
    #[error("client identity: Workload API {socket}: {source}")]
    Identity { socket: String, source: SvidError },
}

/// Why the console's SVID could not be taken from a Workload API message or stream.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SvidError {
    /// The socket cannot be dialled.
    #[error("{0}")]
    Connect(#[from] tonic::transport::Error),
    /// The Workload API refused.
    #[error("{}", .0.message())]
    Rpc(#[from] tonic::Status),
    #[error("no X509-SVID within 10 s")]
    Timeout,
    #[error("stream ended without an X509-SVID")]
    Ended,
    /// No SVID for the wanted SPIFFE ID (`any ID` when none was asked for).
    #[error("no X509-SVID for {0}")]
    NotFound(String),
    /// The chain or the bundle is not DER.
    #[error("{0}")]
    Der(#[from] PemError),
    /// The key, chain or bundle is unusable for TLS.
    #[error("{0}")]
    Tls(#[from] TlsError),
}

/// The console's own X509-SVID and trust bundle, for `https://` endpoints.
#[derive(Clone)]
pub struct ClientTls {
    identity: SharedIdentity,
    roots: SharedRoots,
}

impl ClientTls {
    /// Fetches an X509-SVID (the one for `want`, else the first) and the bundle from a
    /// Workload API socket.
    pub async fn from_workload_api(socket: &Path, want: Option<&str>) -> Result<Self, ClientError> {
        let (tls, s) = Self::first(socket, want)
            .await
            .map_err(|source| ClientError::Identity {
                socket: socket.display().to_string(),
                source,
            })?;
        // Keep following the stream: the SVID rotates (and the bundle with it) while the
        // console runs for hours; a failed update keeps the last good identity.
        let (follow, want) = (tls.clone(), want.map(str::to_string));
        tokio::spawn(async move {
            let mut s = s;
            while let Ok(Some(resp)) = s.message().await {
                if let Err(e) = follow.install(&resp, want.as_deref()) {
                    tracing::warn!(error = %e, "console SVID update ignored");
                }
            }
            tracing::warn!(
                "Workload API stream for the console's SVID ended; keeping the last SVID"
            );
        });
        Ok(tls)
    }

    /// The first SVID of the Workload API stream, and the stream.
    async fn first(
        socket: &Path,
        want: Option<&str>,
    ) -> Result<(Self, tonic::Streaming<X509svidResponse>), SvidError> {
        let mut c = trustdeck_transport::workload_client::connect(socket)?;
        let mut s = c.fetch_x509svid(X509svidRequest {}).await?.into_inner();
        let resp = tokio::time::timeout(Duration::from_secs(10), s.message())
            .await
            .map_err(|_| SvidError::Timeout)??
            .ok_or(SvidError::Ended)?;
        let (chain, key, bundle) = pick(&resp, want)?;
        let tls = Self {
            identity: SharedIdentity::new(),
            roots: SharedRoots::new(&bundle)?,
        };
        tls.identity.set(chain, &key)?;
        Ok((tls, s))
    }

    /// Installs the SVID for `want` (else the first) and its bundle from one stream message.
    fn install(&self, resp: &X509svidResponse, want: Option<&str>) -> Result<(), SvidError> {
        let (chain, key, bundle) = pick(resp, want)?;
        self.roots.set(&bundle)?;
        Ok(self.identity.set(chain, &key)?)
    }
}

/// The SVID for `want` (else the first) in a Workload API message: its chain (DER, leaf
/// first), PKCS#8 key and bundle.
type Picked = (Vec<Vec<u8>>, Vec<u8>, Vec<Vec<u8>>);

fn pick(resp: &X509svidResponse, want: Option<&str>) -> Result<Picked, SvidError> {
    let svid = resp
        .svids
        .iter()
        .find(|s| want.is_none_or(|w| s.spiffe_id == w))
        .ok_or_else(|| SvidError::NotFound(want.unwrap_or("any ID").to_string()))?;
    let chain = trustdeck_spiffe::pem::split_der(&svid.x509_svid)?;
    let bundle = trustdeck_spiffe::pem::split_der(&svid.bundle)?;
    Ok((chain, svid.x509_svid_key.clone(), bundle))
}

/// A channel to one daemon's admin API.
pub fn channel(ep: &Endpoint, tls: Option<&ClientTls>) -> Result<Channel, ClientError> {
    match ep {
        Endpoint::Unix(p) => {
            trustdeck_transport::connect::watch_channel_uds(p.clone()).map_err(|source| {
                ClientError::Endpoint {
                    endpoint: p.display().to_string(),
                    source,
                }
            })
        }
        Endpoint::Tls { addr, server_id } => {
            let tls = tls.ok_or_else(|| ClientError::NoIdentity { addr: addr.clone() })?;
            let cfg = trustdeck_transport::tls::client_config(
                tls.identity.clone(),
                tls.roots.clone(),
                server_id.clone(),
            )
            .map_err(|source| ClientError::Tls {
                addr: addr.clone(),
                source,
            })?;
            trustdeck_transport::connect::watch_channel_tls(addr, cfg).map_err(|source| {
                ClientError::Endpoint {
                    endpoint: addr.clone(),
                    source,
                }
            })
        }
    }
}

/// A gRPC status as one line, with its transport cause (e.g. "connection refused").
pub fn describe(s: &tonic::Status) -> String {
    let mut out = if s.message().is_empty() {
        format!("{:?}", s.code())
    } else {
        s.message().to_string()
    };
    let mut src = std::error::Error::source(s);
    while let Some(e) = src {
        let t = e.to_string();
        if !out.contains(&t) {
            out.push_str(": ");
            out.push_str(&t);
        }
        src = e.source();
    }
    out
}

/// The running streams.
pub struct Watcher {
    channels: Vec<Channel>,
    resubscribe: Vec<mpsc::UnboundedSender<()>>,
    tx: mpsc::UnboundedSender<Update>,
    tasks: tokio::task::JoinSet<()>,
}

impl Watcher {
    /// Opens a stream to every target; updates go to `tx`. Lost connections are stamped with
    /// the system clock.
    pub fn start(
        targets: &[Target],
        tls: Option<Arc<ClientTls>>,
        tx: mpsc::UnboundedSender<Update>,
    ) -> Result<Self, ClientError> {
        Self::start_with_clock(targets, tls, tx, trustdeck_process::clock::system())
    }

    /// [`Watcher::start`], stamping lost connections with `clock`.
    pub fn start_with_clock(
        targets: &[Target],
        tls: Option<Arc<ClientTls>>,
        tx: mpsc::UnboundedSender<Update>,
        clock: Arc<dyn Clock>,
    ) -> Result<Self, ClientError> {
        let mut channels = Vec::new();
        let mut resubscribe = Vec::new();
        let mut tasks = tokio::task::JoinSet::new();
        for (d, t) in targets.iter().enumerate() {
            let ch = channel(&t.endpoint, tls.as_deref())?;
            let (rtx, rrx) = mpsc::unbounded_channel();
            tasks.spawn(follow(d, ch.clone(), tx.clone(), rrx, clock.clone()));
            channels.push(ch);
            resubscribe.push(rtx);
        }
        Ok(Self {
            channels,
            resubscribe,
            tx,
            tasks,
        })
    }

    /// Reopens daemon `d`'s stream (after a revision gap).
    pub fn resubscribe(&self, d: usize) {
        if let Some(r) = self.resubscribe.get(d) {
            let _ = r.send(());
        }
    }

    /// Asks daemon `d` for one node's details; the answer arrives as [`Update::Detail`].
    pub fn fetch_detail(&self, d: usize, node_id: String) {
        let Some(ch) = self.channels.get(d).cloned() else {
            return;
        };
        let tx = self.tx.clone();
        tokio::spawn(async move {
            let mut c = ObserveClient::new(ch).max_decoding_message_size(MAX_MESSAGE);
            let r = tokio::time::timeout(
                DETAIL_TIMEOUT,
                c.get_node(GetNodeRequest {
                    id: node_id.clone(),
                }),
            )
            .await
            .map_err(|_| DetailError::Timeout {
                secs: DETAIL_TIMEOUT.as_secs(),
            })
            .and_then(|r| {
                r.map(|x| {
                    let mut detail = x.into_inner();
                    if let Some(n) = detail.node.as_mut() {
                        trustdeck_proto::vocab::adopt_legacy_node(n);
                    }
                    detail
                })
                .map_err(|s| DetailError::Rpc(describe(&s)))
            });
            let _ = tx.send(Update::Detail(node_id, r));
        });
    }

    /// Stops every stream.
    pub async fn stop(mut self) {
        self.tasks.shutdown().await;
    }
}

/// Follows daemon `d`'s stream until the watcher stops: reopens it with backoff, at once after
/// a revision gap, and reports every loss.
async fn follow(
    d: usize,
    ch: Channel,
    tx: mpsc::UnboundedSender<Update>,
    mut resubscribe: mpsc::UnboundedReceiver<()>,
    clock: Arc<dyn Clock>,
) {
    let mut backoff = Duration::from_millis(250);
    loop {
        let mut client = ObserveClient::new(ch.clone()).max_decoding_message_size(MAX_MESSAGE);
        let mut gap = false;
        let error = match client.watch(WatchRequest {}).await {
            Ok(resp) => {
                let mut s = resp.into_inner();
                loop {
                    tokio::select! {
                        m = s.message() => match m {
                            Ok(Some(m)) => {
                                backoff = Duration::from_millis(250);
                                if tx.send(Update::Stream(d, m)).is_err() {
                                    return;
                                }
                            }
                            Ok(None) => break "the daemon closed the stream".to_string(),
                            Err(st) => break describe(&st),
                        },
                        r = resubscribe.recv() => {
                            if r.is_none() {
                                return;
                            }
                            gap = true;
                            break "revision gap".to_string();
                        }
                    }
                }
            }
            Err(st) => describe(&st),
        };
        if gap {
            continue;
        }
        tracing::info!(daemon = d, %error, "admin stream lost");
        if tx
            .send(Update::Conn(
                d,
                DaemonConn::Lost {
                    since: clock.now(),
                    error,
                },
            ))
            .is_err()
        {
            return;
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(MAX_BACKOFF);
    }
}
