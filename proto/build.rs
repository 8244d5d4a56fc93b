fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!("cargo:rerun-if-changed=switchboard.proto");
    // protox compiles the schema in Rust, so building needs no `protoc`.
    let descriptors = protox::compile(["switchboard.proto"], ["."])?;
    // Serialize lets `switchboard tail` print any envelope as a JSON line.
    prost_build::Config::new().type_attribute(".", "#[derive(serde::Serialize)]").compile_fds(descriptors)?;
    Ok(())
}
