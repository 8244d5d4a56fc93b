fn main() -> Result<(), Box<dyn std::error::Error>> {
    // Every .proto here is one package, `switchboard.v1`: adding a file needs no change below.
    println!("cargo:rerun-if-changed=.");
    let mut files: Vec<_> = std::fs::read_dir(".")?
        .map(|entry| entry.map(|e| e.path()))
        .collect::<Result<Vec<_>, _>>()?
        .into_iter()
        .filter(|path| path.extension().is_some_and(|ext| ext == "proto"))
        .collect();
    files.sort();
    // protox compiles the schema in Rust, so building needs no `protoc`.
    let descriptors = protox::compile(&files, ["."])?;
    // Serialize lets `switchboard tail` print any envelope as a JSON line.
    prost_build::Config::new().type_attribute(".", "#[derive(serde::Serialize)]").compile_fds(descriptors)?;
    Ok(())
}
