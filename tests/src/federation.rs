//! Federation and isolated trust domains, as a test sees them: entries that federate, what a
//! workload holds of a foreign trust domain and whether it verifies that domain's SVIDs.

use super::*;

/// `entry create` for this test's uid under `parent`, federating with `federates_with`.
pub fn federating_entry(
    server: &ServerProc,
    parent: &str,
    id: &str,
    federates_with: &[&str],
) -> Output {
    let uid = format!("unix:uid:{}", my_uid());
    let mut args = vec![
        "entry",
        "create",
        "--spiffe-id",
        id,
        "--parent-id",
        parent,
        "--selector",
        &uid,
    ];
    for td in federates_with {
        args.extend(["--federates-with", td]);
    }
    server.cli(&args)
}

/// SHA-256 fingerprints (lowercase hex) of DER certificates, sorted.
pub fn fingerprints(ders: &[Vec<u8>]) -> Vec<String> {
    let mut v: Vec<String> = ders
        .iter()
        .map(|der| hex_lower(ring::digest::digest(&ring::digest::SHA256, der).as_ref()))
        .collect();
    v.sort();
    v
}

/// What the workload on `socket` holds of trust domain `td` (py-spiffe's `federated` mode):
/// `context_roots`, `x509_bundles_roots`, `jwt_kids`; with `chain`, whether that PEM chain
/// verifies (`chain`: null or the reason); with `token` (a JWT-SVID for `audience`), whether
/// it validates locally (`local`) and at the agent (`agent`). Fails while the workload has
/// no identity yet.
pub fn foreign_view(
    socket: &Path,
    td: &str,
    chain: Option<&Path>,
    token: Option<(&str, &str)>,
) -> Result<serde_json::Value, String> {
    let chain = chain.map(|c| c.display().to_string());
    let mut args = vec!["federated", "--trust-domain", td, "--timeout", "10"];
    if let Some(c) = &chain {
        args.extend(["--chain-file", c]);
    }
    if let Some((t, audience)) = token {
        args.extend(["--token", t, "--audience", audience]);
    }
    try_py_spiffe(socket, &args)
}

/// The PEM chain of the first X.509-SVID the workload on `socket` holds, written to `path`.
pub fn save_svid_chain(socket: &Path, path: &Path) {
    let svid = wait_for(30, "a workload SVID", || {
        try_py_spiffe(socket, &["x509", "--timeout", "3"]).ok()
    });
    let pem = svid["x509"][0]["chain_pem"].as_str().expect("chain");
    std::fs::write(path, pem).expect("write chain");
}

/// `a` federates with `b` over `https_spiffe`, `b`'s current bundle (written into `dir`) as
/// the bootstrap bundle and `b`'s server ID as the endpoint's; returns `b`'s trust domain.
pub fn federate_https_spiffe(a: &ServerProc, b: &ServerProc, dir: &Path) -> String {
    let td = b.info().trust_domain.as_str().to_string();
    let bootstrap = dir.join(format!("{td}-bootstrap.pem"));
    std::fs::write(&bootstrap, b.cli_ok(&["bundle", "show", "--format", "pem"])).expect("write");
    let url = format!("https://127.0.0.1:{}/", b.bundle_endpoint_port());
    a.cli_ok(&[
        "federation",
        "create",
        "--trust-domain",
        &td,
        "--endpoint-url",
        &url,
        "--profile",
        "https_spiffe",
        "--endpoint-spiffe-id",
        &b.server_spiffe_id(),
        "--bootstrap-bundle",
        &bootstrap.display().to_string(),
    ]);
    td
}

/// `bundle export --signed --out <dir>/<name> --output json` on `s`: the file and what was
/// printed.
pub fn export_signed(s: &ServerProc, dir: &Path, name: &str) -> (PathBuf, serde_json::Value) {
    let out = dir.join(name);
    let path = out.to_str().expect("utf-8 path");
    let printed = s.cli_ok(&[
        "bundle", "export", "--signed", "--out", path, "--output", "json",
    ]);
    let v = serde_json::from_str(&printed).unwrap_or_else(|e| panic!("{e}: {printed}"));
    assert!(out.exists(), "{v}");
    (out, v)
}

/// The fingerprint of the root that signs an export (as `export_signed` printed it).
pub fn signing_root(export: &serde_json::Value) -> String {
    let roots = export["roots"].as_array().expect("roots");
    let signs: Vec<_> = roots.iter().filter(|r| r["signs"] == true).collect();
    assert_eq!(signs.len(), 1, "{export}");
    signs[0]["sha256"].as_str().expect("sha256").to_string()
}

/// The arguments of `bundle import --trust-domain TD [--fingerprint FP] FILE --output json`.
pub fn import_args<'a>(td: &'a str, file: &'a Path, fp: Option<&'a str>) -> Vec<&'a str> {
    let mut a = vec!["bundle", "import", "--trust-domain", td, "--output", "json"];
    if let Some(fp) = fp {
        a.extend(["--fingerprint", fp]);
    }
    a.push(file.to_str().expect("utf-8 path"));
    a
}

/// `bundle import` of `file` (a bundle of `td`, or a receipt from peer `td`) at `s`; its JSON
/// (`receipt`: the receipt written, for a bundle).
pub fn import_file(s: &ServerProc, td: &str, file: &Path, fp: Option<&str>) -> serde_json::Value {
    let out = s.cli_ok(&import_args(td, file, fp));
    serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}"))
}
