//! JWT-SVIDs for workloads: minted by the server (which needs it reachable), cached while
//! they have more than half their life left, in a cache bounded by bytes.

mod cache;

use chrono::DateTime;
use tonic::{Code, Status};
use trustdeck_proto::node::MintJwtSvidRequest;

use super::Agent;
use crate::cache::LocalEntry;

pub(super) use cache::{JwtCache, MAX_BYTES, Minted};

impl Agent {
    /// A JWT-SVID for `entry` and `audience`, from cache while it has more than half its life
    /// left, else minted by the server.
    pub async fn jwt_svid(
        &self,
        entry: &LocalEntry,
        audience: &[String],
    ) -> Result<String, Status> {
        let mut aud = audience.to_vec();
        aud.sort();
        let key = (entry.id.clone(), aud);
        let now = self.clock.now();
        if let Some(tok) = self
            .jwt_cache
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&key, now)
        {
            return Ok(tok.to_string());
        }
        let r = self
            .client()
            .mint_jwt_svid(MintJwtSvidRequest {
                entry_id: entry.id.clone(),
                audience: audience.to_vec(),
            })
            .await
            .map_err(|s| match s.code() {
                Code::InvalidArgument => s,
                _ => Status::unavailable(format!(
                    "JWT-SVID issuance needs the server: {}",
                    s.message()
                )),
            })?
            .into_inner();
        let exp = DateTime::from_timestamp(r.expires_at, 0).unwrap_or(now);
        let renew = now + (exp - now) / 2;
        self.jwt_cache
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(key, Minted::new(r.token.clone(), r.expires_at), renew);
        Ok(r.token)
    }
}
