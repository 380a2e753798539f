//! The SPIFFE Workload API on a Unix socket, wire-compatible with standard clients.
//!
//! Every call must carry `workload.spiffe.io: true` (else `InvalidArgument`). Callers are
//! attested from the socket peer's credentials; a caller with no matching entry gets
//! `PermissionDenied`. Streams send the full state at once and again on every change.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use std::pin::Pin;
use tokio::sync::{mpsc, watch};

use tokio_stream::wrappers::{ReceiverStream, WatchStream};
use tokio_stream::{Stream, StreamExt};
use tonic::{Request, Response, Status};
use trustdeck_proto::WORKLOAD_HEADER;
use trustdeck_proto::workload::spiffe_workload_api_server::SpiffeWorkloadApi;
use trustdeck_proto::workload::*;

use crate::agent::Agent;
use crate::attestor::UnixAttestor;
use crate::cache::{Cache, ForeignBundle, LocalEntry};
use crate::limits;
use crate::peer::PeerInfo;

/// How long a new caller waits for its SVIDs while the agent is starting or an entry was just
/// created; after that it gets `Unavailable`.
pub const FIRST_SVID_WAIT: Duration = Duration::from_secs(10);

/// Rejects calls without the Workload API security header.
#[allow(clippy::result_large_err)]
pub fn check_header(req: Request<()>) -> Result<Request<()>, Status> {
    match req.metadata().get(WORKLOAD_HEADER) {
        Some(v) if v == "true" => Ok(req),
        _ => Err(Status::invalid_argument(
            "security header missing: Workload API calls must carry gRPC metadata `workload.spiffe.io: true`",
        )),
    }
}

/// The Workload API service.
pub struct WorkloadApi {
    agent: Arc<Agent>,
    attestor: Arc<UnixAttestor>,
    streams: limits::UidCounter,
}

impl WorkloadApi {
    /// A service over the agent.
    pub fn new(agent: Arc<Agent>) -> Self {
        let limit = agent.config().max_hash_bytes;
        Self {
            agent,
            attestor: Arc::new(UnixAttestor::new(limit)),
            streams: limits::UidCounter::new(limits::MAX_STREAMS_PER_UID),
        }
    }

    /// A place for one more response stream of the caller (`ResourceExhausted` when its uid
    /// holds too many).
    fn stream_permit<T>(&self, req: &Request<T>) -> Result<limits::UidPermit, Status> {
        let cred = peer_cred(req)?;
        Ok(limits::acquire_stream(&self.streams, cred.uid())?)
    }

    /// Attests the caller. Hashing an executable blocks, so a hash-cache miss runs on the
    /// blocking pool, never on a runtime worker.
    /// Selectors of a caller whose process is still the one that connected (checked after
    /// attestation, see [`crate::peer`]).
    async fn selectors<T>(&self, req: &Request<T>) -> Result<Vec<String>, Status> {
        let peer = peer_info(req)?;
        let cred = peer_cred(req)?;
        // Cheap with a cached executable hash; hashing itself goes to the blocking pool.
        let selectors = match self
            .attestor
            .attest_cached(cred.pid(), cred.uid(), cred.gid())
        {
            Some(s) => s,
            None => {
                let attestor = self.attestor.clone();
                tokio::task::spawn_blocking(move || {
                    attestor.attest(cred.pid(), cred.uid(), cred.gid())
                })
                .await
                .map_err(|e| Status::internal(format!("workload attestation failed: {e}")))?
            }
        };
        if let Some(pid) = cred.pid().filter(|p| *p > 0) {
            peer.verify(pid)?;
        }
        Ok(selectors)
    }
}

/// What was recorded of the socket peer at accept.
fn peer_info<T>(req: &Request<T>) -> Result<&PeerInfo, Status> {
    req.extensions()
        .get::<PeerInfo>()
        .ok_or_else(|| Status::internal("cannot read the caller's credentials"))
}

/// The socket peer's credentials.
fn peer_cred<T>(req: &Request<T>) -> Result<tokio::net::unix::UCred, Status> {
    peer_info(req)?
        .uds
        .peer_cred
        .ok_or_else(|| Status::internal("cannot read the caller's credentials"))
}

/// `stream`, holding `permit` until it is dropped.
fn holding<T: Send + 'static>(stream: ViewStream<T>, permit: limits::UidPermit) -> ViewStream<T> {
    Box::pin(stream.map(move |item| {
        let _held = &permit;
        item
    }))
}

fn td_key(cache: &Cache) -> String {
    cache.bundle.trust_domain.id().to_string()
}

/// The bundles of `entries`' workloads, by trust domain ID: this trust domain's, then those
/// of the foreign trust domains the entries federate with, each as `form` makes it.
fn bundles_for(
    cache: &Cache,
    entries: &[&LocalEntry],
    own: Vec<u8>,
    form: impl Fn(&ForeignBundle) -> Vec<u8>,
) -> HashMap<String, Vec<u8>> {
    let mut bundles = federated_for(cache, entries, form);
    bundles.insert(td_key(cache), own);
    bundles
}

/// The foreign bundles `entries` federate with, by trust domain ID.
fn federated_for(
    cache: &Cache,
    entries: &[&LocalEntry],
    form: impl Fn(&ForeignBundle) -> Vec<u8>,
) -> HashMap<String, Vec<u8>> {
    cache
        .federated_for(entries)
        .into_iter()
        .map(|b| (b.bundle.trust_domain.id().to_string(), form(b)))
        .collect()
}

/// The X509-SVID response for a workload, or why there is none.
fn x509_view(
    cache: &Cache,
    selectors: &[String],
    now: chrono::DateTime<chrono::Utc>,
) -> Result<Option<X509svidResponse>, Status> {
    let matched = cache.matching(selectors);
    if matched.is_empty() {
        return if cache.synced {
            Err(Status::permission_denied(
                "no identity issued: no registration entry matches this process",
            ))
        } else {
            Ok(None)
        };
    }
    let bundle = &cache.bundle_der;
    // An expired SVID is never handed out: while the server is unreachable, workloads keep
    // the cached ones only until they expire.
    let svids: Vec<X509svid> = matched
        .iter()
        .filter_map(|e| cache.svids.get(&e.id))
        .filter(|s| s.not_after > now)
        .map(|s| X509svid {
            spiffe_id: s.spiffe_id.to_string(),
            x509_svid: s.chain_der.clone(),
            x509_svid_key: s.key_pkcs8.clone(),
            bundle: bundle.clone(),
            hint: String::new(),
        })
        .collect();
    if svids.is_empty() {
        return Ok(None);
    }
    Ok(Some(X509svidResponse {
        svids,
        crl: vec![],
        federated_bundles: federated_for(cache, &matched, |b| b.x509_der.clone()),
    }))
}

fn require_identity(cache: &Cache, selectors: &[String]) -> Result<bool, Status> {
    if !cache.matching(selectors).is_empty() {
        Ok(true)
    } else if cache.synced {
        Err(Status::permission_denied(
            "no identity issued: no registration entry matches this process",
        ))
    } else {
        Ok(false)
    }
}

/// Streams `view(cache)` to the client: at once, then whenever it changes. `Ok(None)` means
/// "not ready yet": the stream waits (up to [`FIRST_SVID_WAIT`] for the first message).
fn stream_views<T, F>(mut rx: watch::Receiver<Arc<Cache>>, view: F) -> Result<ViewStream<T>, Status>
where
    T: Clone + PartialEq + Send + 'static,
    F: Fn(&Cache) -> Result<Option<T>, Status> + Send + 'static,
{
    let current = rx.borrow_and_update().clone();
    let first = view(&current)?;
    if first.is_some() {
        // Ready now (the common case): adapt the watch channel directly, no task per stream.
        // The first item is the current state; later items are changes, repeats suppressed.
        let mut last: Option<T> = None;
        let s = WatchStream::new(rx).filter_map(move |cache| match view(&cache) {
            Ok(Some(v)) if last.as_ref() != Some(&v) => {
                last = Some(v.clone());
                Some(Ok(v))
            }
            Ok(_) => None,
            Err(e) => Some(Err(e)),
        });
        return Ok(Box::pin(s));
    }
    let (tx, out) = mpsc::channel(4);
    tokio::spawn(async move {
        let mut last: Option<T> = None;
        let mut pending = first;
        let deadline = tokio::time::Instant::now() + FIRST_SVID_WAIT;
        loop {
            if let Some(v) = pending.take()
                && last.as_ref() != Some(&v)
            {
                // Keep what was sent to suppress repeats of an unchanged state.
                if tx.send(Ok(v.clone())).await.is_err() {
                    return;
                }
                last = Some(v);
            }
            let wait_first = last.is_none();
            tokio::select! {
                _ = tx.closed() => return,
                changed = rx.changed() => {
                    if changed.is_err() {
                        let _ = tx.send(Err(Status::unavailable("agent is shutting down"))).await;
                        return;
                    }
                }
                _ = tokio::time::sleep_until(deadline), if wait_first => {
                    let _ = tx.send(Err(Status::unavailable(
                        "agent has no SVID for this workload yet (starting, or the server is unreachable)",
                    ))).await;
                    return;
                }
            }
            let current = rx.borrow_and_update().clone();
            match view(&current) {
                Ok(v) => pending = v,
                Err(e) => {
                    let _ = tx.send(Err(e)).await;
                    return;
                }
            }
        }
    });
    Ok(Box::pin(ReceiverStream::new(out)))
}

/// A Workload API response stream.
pub type ViewStream<T> = Pin<Box<dyn Stream<Item = Result<T, Status>> + Send>>;

#[tonic::async_trait]
impl SpiffeWorkloadApi for WorkloadApi {
    type FetchX509SVIDStream = ViewStream<X509svidResponse>;
    type FetchX509BundlesStream = ViewStream<X509BundlesResponse>;
    type FetchJWTBundlesStream = ViewStream<JwtBundlesResponse>;

    async fn fetch_x509svid(
        &self,
        request: Request<X509svidRequest>,
    ) -> Result<Response<Self::FetchX509SVIDStream>, Status> {
        let permit = self.stream_permit(&request)?;
        let selectors = self.selectors(&request).await?;
        let clock = self.agent.clock().clone();
        let s = stream_views(self.agent.subscribe(), move |c| {
            x509_view(c, &selectors, clock.now())
        })?;
        Ok(Response::new(holding(s, permit)))
    }

    async fn fetch_x509_bundles(
        &self,
        request: Request<X509BundlesRequest>,
    ) -> Result<Response<Self::FetchX509BundlesStream>, Status> {
        let permit = self.stream_permit(&request)?;
        let selectors = self.selectors(&request).await?;
        let s = stream_views(self.agent.subscribe(), move |c| {
            if !require_identity(c, &selectors)? {
                return Ok(None);
            }
            let matched = c.matching(&selectors);
            Ok(Some(X509BundlesResponse {
                crl: vec![],
                bundles: bundles_for(c, &matched, c.bundle_der.clone(), |b| b.x509_der.clone()),
            }))
        })?;
        Ok(Response::new(holding(s, permit)))
    }

    async fn fetch_jwtsvid(
        &self,
        request: Request<JwtsvidRequest>,
    ) -> Result<Response<JwtsvidResponse>, Status> {
        let selectors = self.selectors(&request).await?;
        let req = request.into_inner();
        limits::check_audiences(&req.audience)?;
        limits::check_spiffe_id(&req.spiffe_id)?;
        let cache = self.agent.cache();
        if !require_identity(&cache, &selectors)? {
            return Err(Status::unavailable(
                "agent is starting: entries not synced yet",
            ));
        }
        let mut matched = cache.matching(&selectors);
        if !req.spiffe_id.is_empty() {
            matched.retain(|e| e.spiffe_id.as_str() == req.spiffe_id);
            if matched.is_empty() {
                return Err(Status::permission_denied(format!(
                    "this process has no identity {}",
                    req.spiffe_id
                )));
            }
        }
        let mut svids = Vec::with_capacity(matched.len());
        for e in matched {
            let token = self.agent.jwt_svid(e, &req.audience).await?;
            svids.push(Jwtsvid {
                spiffe_id: e.spiffe_id.to_string(),
                svid: token,
                hint: String::new(),
            });
        }
        Ok(Response::new(JwtsvidResponse { svids }))
    }

    async fn fetch_jwt_bundles(
        &self,
        request: Request<JwtBundlesRequest>,
    ) -> Result<Response<Self::FetchJWTBundlesStream>, Status> {
        let permit = self.stream_permit(&request)?;
        let selectors = self.selectors(&request).await?;
        let s = stream_views(self.agent.subscribe(), move |c| {
            if !require_identity(c, &selectors)? {
                return Ok(None);
            }
            let matched = c.matching(&selectors);
            let own = c.bundle.jwks_json().into_bytes();
            Ok(Some(JwtBundlesResponse {
                bundles: bundles_for(c, &matched, own, |b| b.jwks.clone()),
            }))
        })?;
        Ok(Response::new(holding(s, permit)))
    }

    async fn validate_jwtsvid(
        &self,
        request: Request<ValidateJwtsvidRequest>,
    ) -> Result<Response<ValidateJwtsvidResponse>, Status> {
        limits::check_validation(&request.get_ref().audience, &request.get_ref().svid)?;
        if request.get_ref().svid.is_empty() {
            return Err(Status::invalid_argument("svid must not be empty"));
        }
        // The subject's trust domain picks the bundle (never another's keys): ours, or a
        // foreign one the caller's entries federate with.
        let (_, claims) = trustdeck_spiffe::jwt::decode_unverified(&request.get_ref().svid)
            .map_err(|e| Status::invalid_argument(e.to_string()))?;
        let td = claims.sub.trust_domain().clone();
        let cache = self.agent.cache();
        let foreign;
        let authorities = if td == cache.bundle.trust_domain {
            &cache.bundle.jwt_authorities
        } else {
            let selectors = self.selectors(&request).await?;
            let matched = cache.matching(&selectors);
            foreign = cache
                .federated_for(&matched)
                .into_iter()
                .find(|b| b.bundle.trust_domain == td)
                .ok_or_else(|| {
                    Status::invalid_argument(format!(
                        "no bundle for trust domain {}: this workload's entries do not federate with it",
                        td.as_str()
                    ))
                })?;
            &foreign.bundle.jwt_authorities
        };
        let req = request.into_inner();
        let v = trustdeck_spiffe::jwt::validate(
            &req.svid,
            &req.audience,
            authorities,
            self.agent.clock().now(),
        )
        .map_err(|e| Status::invalid_argument(e.to_string()))?;
        Ok(Response::new(ValidateJwtsvidResponse {
            spiffe_id: v.spiffe_id.to_string(),
            claims: Some(json_struct(&v.claims)),
        }))
    }
}

/// JSON object to `google.protobuf.Struct`.
pub fn json_struct(map: &serde_json::Map<String, serde_json::Value>) -> prost_types::Struct {
    prost_types::Struct {
        fields: map
            .iter()
            .map(|(k, v)| (k.clone(), json_value(v)))
            .collect(),
    }
}

fn json_value(v: &serde_json::Value) -> prost_types::Value {
    use prost_types::value::Kind;
    let kind = match v {
        serde_json::Value::Null => Kind::NullValue(0),
        serde_json::Value::Bool(b) => Kind::BoolValue(*b),
        serde_json::Value::Number(n) => Kind::NumberValue(n.as_f64().unwrap_or(0.0)),
        serde_json::Value::String(s) => Kind::StringValue(s.clone()),
        serde_json::Value::Array(a) => Kind::ListValue(prost_types::ListValue {
            values: a.iter().map(json_value).collect(),
        }),
        serde_json::Value::Object(o) => Kind::StructValue(json_struct(o)),
    };
    prost_types::Value { kind: Some(kind) }
}
