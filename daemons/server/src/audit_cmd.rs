//! `trustdeck-server audit verify`: checks the audit hash chain in the datastore itself.
//!
//! It reads the datastore named by `-c CONFIG` directly, not through the admin socket: the
//! verdict does not rest on the word of the server whose log it checks, and it works while
//! that server is stopped.

use std::path::Path;

use anyhow::{Context, Result, bail};
use trustdeck_datastore::{Contents, Datastore};
use trustdeck_server::config::Config;

use crate::Output;

/// Verifies the chain; `Ok` when intact, an error naming the first bad record otherwise.
pub async fn verify(config: &Path, output: Output) -> Result<()> {
    let c = Config::load(config)?;
    // An empty or missing datastore has no log to vouch for: saying "intact" there would hide
    // a lost database, and opening it would create the file.
    let contents = Datastore::inspect(&c.datastore)
        .await
        .with_context(|| format!("inspect the datastore of {}", config.display()))?;
    if contents != Contents::Initialised {
        bail!(
            "the datastore of {} holds no server state (missing, empty or in memory): there is \
             no audit log to verify",
            config.display()
        );
    }
    let ds = Datastore::open_with(&c.datastore, c.datastore_timeout)
        .await
        .with_context(|| format!("open the datastore of {}", config.display()))?;
    let verdict = ds.verify_audit().await;
    ds.close().await;
    let verdict = verdict.context("read the audit log")?;
    if output == Output::Json {
        let v = match &verdict {
            Ok(n) => serde_json::json!({ "intact": true, "records": n }),
            Err(b) => serde_json::json!({
                "intact": false, "first_bad_seq": b.seq(), "problem": b.to_string(),
            }),
        };
        trustdeck_process::outln!("{v}");
    }
    match verdict {
        Ok(n) => {
            if output == Output::Text {
                trustdeck_process::outln!("audit log intact: {n} records chained");
            }
            Ok(())
        }
        Err(b) => bail!("audit log broken at record {}: {b}", b.seq()),
    }
}
