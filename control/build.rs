//! Generates the gRPC server and client code of `proto/scistream.proto`
//! (tonic and prost; needs `protoc`, Debian package protobuf-compiler).

fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!("cargo:rerun-if-changed=proto/scistream.proto");
    println!("cargo:rerun-if-changed=proto/s2cs.proto");
    if std::env::var_os("PROTOC").is_none() && which("protoc").is_none() {
        return Err(
            "protoc not found: install it (apt-get install protobuf-compiler, \
                    or bash scripts/setup.sh) or set PROTOC"
                .into(),
        );
    }
    tonic_build::configure()
        .compile_protos(&["proto/scistream.proto", "proto/s2cs.proto"], &["proto"])?;
    Ok(())
}

fn which(name: &str) -> Option<std::path::PathBuf> {
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|d| d.join(name))
            .find(|p| p.is_file())
    })
}
