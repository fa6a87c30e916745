use std::path::PathBuf;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    // A protoc from the environment wins; otherwise the vendored one keeps the build offline.
    if std::env::var_os("PROTOC").is_none() {
        // The build script is single-threaded here, so changing the environment is sound.
        #[allow(unsafe_code)]
        unsafe {
            std::env::set_var("PROTOC", protoc_bin_vendored::protoc_bin_path()?)
        };
    }
    let root = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR")?).join("../../proto");
    let files: Vec<PathBuf> = ["common", "intake", "routing", "ticketing", "sla", "notify", "events", "operations"]
        .iter()
        .map(|name| root.join(format!("pos/v1/{name}.proto")))
        .collect();
    let descriptor = PathBuf::from(std::env::var("OUT_DIR")?).join("pos_descriptor.bin");
    // Type names (`prost::Name`) give every bus payload its AMQP `type` from the contract itself.
    let mut config = prost_build::Config::new();
    config.enable_type_names();
    tonic_prost_build::configure().file_descriptor_set_path(&descriptor).compile_with_config(
        config,
        &files,
        &[root.clone(), protoc_bin_vendored::include_path()?],
    )?;
    // tonic-prost-build prints no rerun-if-changed of its own once we print any.
    println!("cargo:rerun-if-changed={}", root.display());
    Ok(())
}
