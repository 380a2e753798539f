fn main() -> Result<(), Box<dyn std::error::Error>> {
    for p in ["workload.proto", "node.proto", "admin.proto"] {
        println!("cargo:rerun-if-changed=proto/{p}");
    }
    // Checkouts that share one build directory (CARGO_BUILD_BUILD_DIR) share this script's
    // output too; each has its own target directory, so the code is generated anew for the
    // checkout being built.
    println!("cargo:rerun-if-env-changed=CARGO_TARGET_DIR");
    tonic_prost_build::configure()
        .build_server(true)
        .build_client(true)
        .compile_protos(
            &[
                "proto/workload.proto",
                "proto/node.proto",
                "proto/admin.proto",
            ],
            &["proto"],
        )?;
    Ok(())
}
