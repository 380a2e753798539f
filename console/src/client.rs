//! The console's only network code: one `Watch` stream per daemon of the fleet, reopened with
//! backoff when it breaks, and `GetNode` calls for the detail pane. Everything received is
//! handed over as an [`Update`]; nothing here interprets it.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use tokio::sync::mpsc;
use tonic::transport::Channel;
use trustdeck_proto::admin::observe_client::ObserveClient;
use trustdeck_proto::admin::{GetNodeRequest, NodeDetail, WatchMessage, WatchRequest};
use trustdeck_topology::DaemonConn;
use trustdeck_transport::{SharedIdentity, SharedRoots};

use crate::fleetfile::{Endpoint, Target};

/// Largest message accepted from a daemon (a snapshot chunk of a big fleet).
pub const MAX_MESSAGE: usize = 64 << 20;
/// Longest wait between reconnection attempts.
pub const MAX_BACKOFF: Duration = Duration::from_secs(3);

/// What the streams deliver.
#[derive(Debug)]
pub enum Update {
    /// A message from daemon `usize`'s stream.
    Stream(usize, WatchMessage),
    /// The console's connection to daemon `usize` changed.
    Conn(usize, DaemonConn),
    /// The answer to a [`Watcher::fetch_detail`].
    Detail(String, Result<NodeDetail, String>),
}

/// Why the client could not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ClientError {
    /// An endpoint is unusable.
    #[error("{0}")]
    Endpoint(String),
    /// No client SVID for mTLS endpoints.
    #[error("client identity: {0}")]
    Identity(String),
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
        let err =
            |m: String| ClientError::Identity(format!("Workload API {}: {m}", socket.display()));
        let mut c = trustdeck_transport::workload_client::connect(socket)
            .map_err(|e| err(e.to_string()))?;
        let mut s = c
            .fetch_x509svid(trustdeck_proto::workload::X509svidRequest {})
            .await
            .map_err(|e| err(e.message().to_string()))?
            .into_inner();
        let resp = tokio::time::timeout(Duration::from_secs(10), s.message())
            .await
            .map_err(|_| err("no X509-SVID within 10 s".into()))?
            .map_err(|e| err(e.message().to_string()))?
            .ok_or_else(|| err("stream ended without an X509-SVID".into()))?;
        let (chain, key, bundle) = pick(&resp, want).map_err(err)?;
        let tls = Self {
            identity: SharedIdentity::new(),
            roots: SharedRoots::new(&bundle).map_err(|e| err(e.to_string()))?,
        };
        tls.identity
            .set(chain, &key)
            .map_err(|e| err(e.to_string()))?;
        // Keep following the stream: the SVID rotates (and the bundle with it) while the
        // console runs for hours; a failed update keeps the last good identity.
        let (follow, want) = (tls.clone(), want.map(str::to_string));
        tokio::spawn(async move {
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

    /// Installs the SVID for `want` (else the first) and its bundle from one stream message.
    fn install(
        &self,
        resp: &trustdeck_proto::workload::X509svidResponse,
        want: Option<&str>,
    ) -> Result<(), String> {
        let (chain, key, bundle) = pick(resp, want)?;
        self.roots.set(&bundle).map_err(|e| e.to_string())?;
        self.identity.set(chain, &key).map_err(|e| e.to_string())
    }
}

/// The SVID for `want` (else the first) in a Workload API message: its chain (DER, leaf
/// first), PKCS#8 key and bundle.
type Picked = (Vec<Vec<u8>>, Vec<u8>, Vec<Vec<u8>>);

fn pick(
    resp: &trustdeck_proto::workload::X509svidResponse,
    want: Option<&str>,
) -> Result<Picked, String> {
    let svid = resp
        .svids
        .iter()
        .find(|s| want.is_none_or(|w| s.spiffe_id == w))
        .ok_or_else(|| format!("no X509-SVID for {}", want.unwrap_or("any ID")))?;
    let chain = trustdeck_spiffe::pem::split_der(&svid.x509_svid).map_err(|e| e.to_string())?;
    let bundle = trustdeck_spiffe::pem::split_der(&svid.bundle).map_err(|e| e.to_string())?;
    Ok((chain, svid.x509_svid_key.clone(), bundle))
}

/// A channel to one daemon's admin API.
pub fn channel(ep: &Endpoint, tls: Option<&ClientTls>) -> Result<Channel, ClientError> {
    match ep {
        Endpoint::Unix(p) => trustdeck_transport::connect::watch_channel_uds(p.clone())
            .map_err(|e| ClientError::Endpoint(format!("{}: {e}", p.display()))),
        Endpoint::Tls { addr, server_id } => {
            let tls = tls.ok_or_else(|| {
                ClientError::Identity(format!(
                    "{addr} is an mTLS endpoint: give the console an SVID with --workload-socket or SPIFFE_ENDPOINT_SOCKET"
                ))
            })?;
            let cfg = trustdeck_transport::tls::client_config(
                tls.identity.clone(),
                tls.roots.clone(),
                server_id.clone(),
            )
            .map_err(|e| ClientError::Endpoint(format!("{addr}: {e}")))?;
            trustdeck_transport::connect::watch_channel_tls(addr, cfg)
                .map_err(|e| ClientError::Endpoint(format!("{addr}: {e}")))
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
    /// Opens a stream to every target; updates go to `tx`.
    pub fn start(
        targets: &[Target],
        tls: Option<Arc<ClientTls>>,
        tx: mpsc::UnboundedSender<Update>,
    ) -> Result<Self, ClientError> {
        let mut channels = Vec::new();
        let mut resubscribe = Vec::new();
        let mut tasks = tokio::task::JoinSet::new();
        for (d, t) in targets.iter().enumerate() {
            let ch = channel(&t.endpoint, tls.as_deref())?;
            let (rtx, rrx) = mpsc::unbounded_channel();
            tasks.spawn(follow(d, ch.clone(), tx.clone(), rrx));
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
                Duration::from_secs(5),
                c.get_node(GetNodeRequest {
                    id: node_id.clone(),
                }),
            )
            .await
            .map_err(|_| "no answer within 5 s".to_string())
            .and_then(|r| r.map(|x| x.into_inner()).map_err(|s| describe(&s)));
            let _ = tx.send(Update::Detail(node_id, r));
        });
    }

    /// Stops every stream.
    pub async fn stop(mut self) {
        self.tasks.shutdown().await;
    }
}

async fn follow(
    d: usize,
    ch: Channel,
    tx: mpsc::UnboundedSender<Update>,
    mut resubscribe: mpsc::UnboundedReceiver<()>,
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
                    since: Utc::now(),
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
