fn main() -> Result<(), Box<dyn std::error::Error>> {
    for p in ["workload.proto", "node.proto", "admin.proto"] {
        println!("cargo:rerun-if-changed=proto/{p}");
    }
    // The Workload API answers a body that does not decode with InvalidArgument.
    tonic_prost_build::configure()
        .build_server(true)
        .build_client(true)
        .codec_path("crate::codec::WorkloadCodec")
        .compile_protos(&["proto/workload.proto"], &["proto"])?;
    tonic_prost_build::configure()
        .build_server(true)
        .build_client(true)
        .compile_protos(&["proto/node.proto", "proto/admin.proto"], &["proto"])?;
    Ok(())
}
