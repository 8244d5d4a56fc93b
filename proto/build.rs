fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!("cargo:rerun-if-changed=switchboard.proto");
    // protox compiles the schema in Rust, so building needs no `protoc`.
    let descriptors = protox::compile(["switchboard.proto"], ["."])?;
    prost_build::Config::new().compile_fds(descriptors)?;
    Ok(())
}
