//! The data directory and the datastore.

use std::os::unix::fs::PermissionsExt;

use trustdeck_datastore::Datastore;

use super::{RunError, io};
use crate::config::Config;

/// Creates the data directory, readable by the server's user only.
pub(super) fn prepare_data_dir(config: &Config) -> Result<(), RunError> {
    let dir = &config.data_dir;
    std::fs::create_dir_all(dir).map_err(io(format!("create data_dir {}", dir.display())))?;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
        .map_err(io(format!("chmod data_dir {}", dir.display())))
}

/// Opens the configured datastore, bringing its schema up to date.
pub(super) async fn open_datastore(config: &Config) -> Result<Datastore, RunError> {
    Datastore::open(&config.datastore)
        .await
        .map_err(|source| RunError::Datastore {
            url: trustdeck_datastore::redact_url(&config.datastore),
            source,
        })
}
