//! Rebuild the crate when a migration is added or changed, so that
//! `sqlx::migrate!` embeds the current set.

fn main() {
    println!("cargo:rerun-if-changed=migrations");
}
