//! The read-only `Observe` service (`Watch`, `GetNode`) every daemon serves from its hub.

use std::pin::Pin;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use tokio_stream::Stream;
use tonic::{Request, Status};
use trustdeck_process::clock::Clock;
use trustdeck_proto::admin::WatchMessage;
use trustdeck_topology::Hub;

use crate::access::AdminAccess;

/// A boxed `Watch` response stream.
pub type WatchStream = Pin<Box<dyn Stream<Item = Result<WatchMessage, Status>> + Send>>;

/// Serves a hub as a `Watch` stream: the snapshot chunks, then every delta in order. A
/// subscriber too slow to keep up gets a fresh snapshot instead of a gap.
pub fn watch_stream(
    hub: Arc<Hub>,
    now: impl Fn() -> DateTime<Utc> + Send + 'static,
) -> WatchStream {
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<WatchMessage, Status>>(64);
    tokio::spawn(async move {
        'resubscribe: loop {
            let sub = hub.subscribe(now());
            let mut deltas = sub.deltas;
            for m in sub.snapshot {
                if tx.send(Ok(m)).await.is_err() {
                    return;
                }
            }
            loop {
                let next = tokio::select! {
                    m = deltas.recv() => m,
                    _ = tx.closed() => return,
                };
                match next {
                    Ok(m) => {
                        if tx.send(Ok((*m).clone())).await.is_err() {
                            return;
                        }
                    }
                    Err(tokio::sync::broadcast::error::RecvError::Lagged(n)) => {
                        tracing::warn!(missed = n, "admin watcher lagged; sending a new snapshot");
                        continue 'resubscribe;
                    }
                    Err(tokio::sync::broadcast::error::RecvError::Closed) => return,
                }
            }
        }
    });
    Box::pin(tokio_stream::wrappers::ReceiverStream::new(rx))
}

/// Finds the DER chain (leaf first) of a node, when the daemon holds it.
pub type ChainFn = Arc<dyn Fn(&trustdeck_proto::admin::Node) -> Vec<Vec<u8>> + Send + Sync>;

/// The read-only `Observe` service (`Watch`, `GetNode`) over a daemon's hub.
pub struct ObserveService {
    hub: Arc<Hub>,
    access: Arc<AdminAccess>,
    clock: Arc<dyn Clock>,
    chain: ChainFn,
}

impl ObserveService {
    /// A service for `hub`, callable by every viewer and operator of `access`.
    pub fn new(
        hub: Arc<Hub>,
        access: Arc<AdminAccess>,
        clock: Arc<dyn Clock>,
        chain: ChainFn,
    ) -> Self {
        Self {
            hub,
            access,
            clock,
            chain,
        }
    }
}

#[tonic::async_trait]
impl trustdeck_proto::admin::observe_server::Observe for ObserveService {
    type WatchStream = WatchStream;

    async fn watch(
        &self,
        request: Request<trustdeck_proto::admin::WatchRequest>,
    ) -> Result<tonic::Response<WatchStream>, Status> {
        let caller = self.access.caller(&request, "Watch")?;
        tracing::debug!(actor = %caller.actor, "admin watcher connected");
        let clock = self.clock.clone();
        Ok(tonic::Response::new(watch_stream(
            self.hub.clone(),
            move || clock.now(),
        )))
    }

    async fn get_node(
        &self,
        request: Request<trustdeck_proto::admin::GetNodeRequest>,
    ) -> Result<tonic::Response<trustdeck_proto::admin::NodeDetail>, Status> {
        self.access.caller(&request, "GetNode")?;
        let id = &request.get_ref().id;
        let node = self
            .hub
            .node(id)
            .ok_or_else(|| Status::not_found(format!("no node {id:?} on this daemon")))?;
        let chain = (self.chain)(&node);
        // The node itself travels in `node`; `fields` adds what only the daemon can read.
        let mut fields = Vec::new();
        if let Some(leaf) = chain.first() {
            match trustdeck_spiffe::x509::describe(leaf) {
                Ok(lines) => fields.extend(lines),
                Err(e) => fields.push(format!("certificate: unreadable ({e})")),
            }
            fields.push(format!("chain length: {}", chain.len()));
        }
        Ok(tonic::Response::new(trustdeck_proto::admin::NodeDetail {
            node: Some({
                let mut node = node;
                trustdeck_proto::vocab::fill_legacy_node(&mut node);
                node
            }),
            chain_der: chain,
            fields,
        }))
    }
}
