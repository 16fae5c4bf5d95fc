//! Zipping a directory (checkpoints, PEFT adapter dirs) and unpacking it again.

use std::io::{Cursor, Read, Write};
use std::path::{Component, Path};

/// Zips `dir` into the file `out`, one file at a time (never the whole archive in memory).
pub fn zip_dir_to(dir: &Path, out: &Path) -> std::io::Result<()> {
    let mut w = zip::ZipWriter::new(std::io::BufWriter::new(std::fs::File::create(out)?));
    let opts = zip::write::SimpleFileOptions::default().compression_method(zip::CompressionMethod::Deflated).large_file(true);
    let mut stack = vec![dir.to_path_buf()];
    let mut files = Vec::new();
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d)? {
            let p = entry?.path();
            if p.is_dir() {
                stack.push(p);
            } else {
                files.push(p);
            }
        }
    }
    files.sort();
    for p in files {
        let rel = p.strip_prefix(dir).map_err(std::io::Error::other)?;
        let name = rel.to_string_lossy().replace('\\', "/");
        w.start_file(name, opts).map_err(std::io::Error::other)?;
        std::io::copy(&mut std::fs::File::open(&p)?, &mut w)?;
    }
    w.finish().map_err(std::io::Error::other)?.flush()
}

/// Unpacks into `dest` via a temporary sibling directory renamed into place, so a
/// crash never leaves a half-unpacked checkpoint. Rejects paths escaping `dest`.
pub fn unzip_dir(data: &[u8], dest: &Path) -> std::io::Result<()> {
    let tmp = dest.with_extension("partial");
    let _ = std::fs::remove_dir_all(&tmp);
    std::fs::create_dir_all(&tmp)?;
    let mut z = zip::ZipArchive::new(Cursor::new(data)).map_err(std::io::Error::other)?;
    for i in 0..z.len() {
        let mut f = z.by_index(i).map_err(std::io::Error::other)?;
        let rel = Path::new(f.name()).to_path_buf();
        if rel.components().any(|c| !matches!(c, Component::Normal(_))) {
            return Err(std::io::Error::other(format!("unsafe path in archive: {}", f.name())));
        }
        let out = tmp.join(&rel);
        if let Some(parent) = out.parent() {
            std::fs::create_dir_all(parent)?;
        }
        let mut buf = Vec::new();
        f.read_to_end(&mut buf)?;
        std::fs::write(out, buf)?;
    }
    let _ = std::fs::remove_dir_all(dest);
    std::fs::rename(&tmp, dest)
}
