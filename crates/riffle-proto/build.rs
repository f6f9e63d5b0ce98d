//! Compiles `proto/` with a vendored `protoc`, so building needs nothing from the system.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let protoc = protoc_bin_vendored::protoc_bin_path()?;
    let proto_dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../proto");
    let peer = proto_dir.join("riffle/peer.proto");
    println!("cargo:rerun-if-changed={}", peer.display());
    let mut config = prost_build::Config::new();
    config.protoc_executable(protoc);
    config.bytes(["."]);
    tonic_prost_build::configure().compile_with_config(config, &[peer], &[proto_dir])?;
    Ok(())
}
