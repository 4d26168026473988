//! `oci-image`: pack the identity filter as a Wasm OCI image and write it as an OCI image-layout
//! archive (`oci-archive:`), ready for `skopeo copy` / `crane push` / `oras cp` to a registry
//! from which Istio pulls it with `url: oci://...`.
//!
//! ```text
//! oci-image WASM OUT [TAG]      e.g. oci-image target/.../identity_filter.wasm target/oci/identity_filter.oci.tar 0.1.0
//! ```
//!
//! The image is the *compat* variant of the Wasm image spec, the layout Istio's fetcher tries
//! first (pkg/wasm/imagefetcher.go): an OCI manifest whose single layer is
//! `application/vnd.oci.image.layer.v1.tar+gzip` holding one file, `plugin.wasm`, and the
//! annotation `module.wasm.image/variant: compat`. (Istio's other, "oci" variant requires
//! exactly two layers, so a lone `application/vnd.module.wasm.content.layer.v1+wasm` layer is
//! refused with "number of layers must be 2 but got 1".) The config is a regular OCI image
//! config (`wasm`/`wasip1`, with the layer's diff_id), so generic tools accept the image too.
//!
//! Everything is deterministic (fixed timestamps, owners, order, gzip header): the same module
//! always gives the same manifest digest, which is what a WasmPlugin's `sha256` pins.

use std::collections::HashMap;
use std::io::Write;
use std::path::Path;
use std::process::ExitCode;

use flate2::{Compression, GzBuilder};
use oci_spec::image::{
    Arch, Descriptor, DescriptorBuilder, Digest, ImageConfigurationBuilder, ImageIndexBuilder,
    ImageManifestBuilder, MediaType, OciLayoutBuilder, Os, RootFsBuilder, Sha256Digest,
};
use sha2::{Digest as _, Sha256};

/// The one file of the layer, as the compat variant names it.
const PLUGIN_FILE: &str = "plugin.wasm";
/// Marks the compat variant (required with the standard OCI layer media type).
const VARIANT_ANNOTATION: (&str, &str) = ("module.wasm.image/variant", "compat");
/// The tag an `oci-archive:` reference resolves (`skopeo copy oci-archive:FILE:TAG ...`).
const REF_NAME: &str = "org.opencontainers.image.ref.name";

type Error = Box<dyn std::error::Error>;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if !(2..=3).contains(&args.len()) {
        eprintln!("usage: oci-image WASM OUT [TAG]");
        return ExitCode::from(2);
    }
    let tag = args.get(2).map(String::as_str).unwrap_or("latest");
    match run(Path::new(&args[0]), Path::new(&args[1]), tag) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("oci-image: {e}");
            ExitCode::FAILURE
        }
    }
}

/// A content-addressed blob of the image.
struct Blob {
    bytes: Vec<u8>,
    hex: String,
}

impl Blob {
    fn new(bytes: Vec<u8>) -> Blob {
        let hex = sha256_hex(&bytes);
        Blob { bytes, hex }
    }

    fn descriptor(&self, media_type: MediaType) -> Result<Descriptor, Error> {
        let digest: Sha256Digest = self.hex.parse()?;
        Ok(DescriptorBuilder::default()
            .media_type(media_type)
            .size(self.bytes.len() as u64)
            .digest(Digest::from(digest))
            .build()?)
    }
}

fn sha256_hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn run(wasm_path: &Path, out: &Path, tag: &str) -> Result<(), Error> {
    let wasm = std::fs::read(wasm_path).map_err(|e| format!("{}: {e}", wasm_path.display()))?;
    if !wasm.starts_with(b"\0asm") {
        return Err(format!("{} is not a WebAssembly module", wasm_path.display()).into());
    }

    // The layer: a tar with plugin.wasm, gzip-compressed. diff_id is the uncompressed tar's.
    let layer_tar = tar_of(&[(PLUGIN_FILE, &wasm)])?;
    let diff_id = format!("sha256:{}", sha256_hex(&layer_tar));
    let layer = Blob::new(gzip(&layer_tar)?);

    let config = ImageConfigurationBuilder::default()
        .architecture(Arch::Wasm)
        .os(Os::Other("wasip1".into()))
        .rootfs(
            RootFsBuilder::default()
                .typ("layers")
                .diff_ids(vec![diff_id])
                .build()?,
        )
        .build()?;
    let config = Blob::new(config.to_string()?.into_bytes());

    let manifest = ImageManifestBuilder::default()
        .schema_version(2u32)
        .media_type(MediaType::ImageManifest)
        .config(config.descriptor(MediaType::ImageConfig)?)
        .layers(vec![layer.descriptor(MediaType::ImageLayerGzip)?])
        .annotations(HashMap::from([(
            VARIANT_ANNOTATION.0.to_string(),
            VARIANT_ANNOTATION.1.to_string(),
        )]))
        .build()?;
    let manifest = Blob::new(manifest.to_string()?.into_bytes());

    let mut manifest_descriptor = manifest.descriptor(MediaType::ImageManifest)?;
    manifest_descriptor.set_annotations(Some(HashMap::from([(
        REF_NAME.to_string(),
        tag.to_string(),
    )])));
    let index = ImageIndexBuilder::default()
        .schema_version(2u32)
        .media_type(MediaType::ImageIndex)
        .manifests(vec![manifest_descriptor])
        .build()?
        .to_string()?;
    let layout = OciLayoutBuilder::default()
        .image_layout_version("1.0.0")
        .build()?
        .to_string()?;

    // The image layout (OCI image-spec image-layout.md), as one tar.
    let mut blobs = [&config, &layer, &manifest];
    blobs.sort_by(|a, b| a.hex.cmp(&b.hex));
    let names: Vec<String> = blobs
        .iter()
        .map(|b| format!("blobs/sha256/{}", b.hex))
        .collect();
    let mut files: Vec<(&str, &[u8])> = vec![
        ("oci-layout", layout.as_bytes()),
        ("index.json", index.as_bytes()),
    ];
    for (name, blob) in names.iter().zip(blobs) {
        files.push((name, &blob.bytes));
    }
    let archive = tar_of(&files)?;
    if let Some(dir) = out.parent() {
        std::fs::create_dir_all(dir)?;
    }
    std::fs::write(out, &archive).map_err(|e| format!("{}: {e}", out.display()))?;

    let mut stdout = std::io::stdout().lock();
    writeln!(stdout, "wrote {} (tag {tag})", out.display())?;
    writeln!(stdout, "  archive   sha256:{}", sha256_hex(&archive))?;
    writeln!(
        stdout,
        "  manifest  sha256:{}   <- WasmPlugin `sha256` / `oci://REPO@sha256:...`",
        manifest.hex
    )?;
    writeln!(
        stdout,
        "  module    sha256:{}   <- `sha256` for file:// or https:// URLs",
        sha256_hex(&wasm)
    )?;
    writeln!(
        stdout,
        "push with: skopeo copy oci-archive:{}:{tag} docker://REGISTRY/identity-filter:{tag}",
        out.display()
    )?;
    Ok(())
}

/// A deterministic ustar archive: regular files (0644, owner 0:0, mtime 0), parent directories
/// (0755) added before their first file, in the given order.
fn tar_of(files: &[(&str, &[u8])]) -> Result<Vec<u8>, Error> {
    let mut builder = tar::Builder::new(Vec::new());
    builder.mode(tar::HeaderMode::Deterministic);
    let mut dirs: Vec<String> = Vec::new();
    for (name, bytes) in files {
        let mut prefix = String::new();
        for part in name
            .split('/')
            .collect::<Vec<_>>()
            .split_last()
            .map_or(&[][..], |(_, d)| d)
        {
            prefix.push_str(part);
            prefix.push('/');
            if !dirs.contains(&prefix) {
                let mut header = header(tar::EntryType::Directory, 0o755, 0);
                builder.append_data(&mut header, &prefix, std::io::empty())?;
                dirs.push(prefix.clone());
            }
        }
        let mut header = header(tar::EntryType::Regular, 0o644, bytes.len() as u64);
        builder.append_data(&mut header, name, *bytes)?;
    }
    Ok(builder.into_inner()?)
}

fn header(kind: tar::EntryType, mode: u32, size: u64) -> tar::Header {
    let mut header = tar::Header::new_ustar();
    header.set_entry_type(kind);
    header.set_mode(mode);
    header.set_size(size);
    header.set_mtime(0);
    header.set_uid(0);
    header.set_gid(0);
    header
}

/// gzip with a fixed header (no name, mtime 0), so the layer digest depends on content only.
fn gzip(bytes: &[u8]) -> Result<Vec<u8>, Error> {
    let mut encoder = GzBuilder::new()
        .mtime(0)
        .write(Vec::new(), Compression::best());
    encoder.write_all(bytes)?;
    Ok(encoder.finish()?)
}
