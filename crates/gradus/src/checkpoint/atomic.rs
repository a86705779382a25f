//! File I/O that cannot leave a damaged file behind: atomic replacement for writing, and a
//! bounded read of regular files only.

use std::fs::File;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use super::error::{CheckpointError, io};

/// Writes `bytes` to `path` atomically: a temporary file in the same directory, fsync,
/// rename over the target, fsync the directory. The previous file stays intact until the
/// rename, and a crash leaves either the old or the new file, never a mix.
///
/// Temporary files are named `.{file name}.tmp-XXXXXX`; one left behind by a process that
/// was killed mid-save is removed by the next save to the same path, so they cannot pile up.
///
/// Only a regular file (or nothing) is replaced: a device, FIFO, socket or directory at
/// `path` is refused, so `/dev/null` given as an output stays a device.
pub fn write_atomically(path: &Path, bytes: &[u8]) -> Result<(), CheckpointError> {
    if let Ok(meta) = std::fs::metadata(path)
        && !meta.is_file()
    {
        return Err(CheckpointError::Io {
            path: path.to_path_buf(),
            source: std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                "not a regular file: refusing to replace it",
            ),
        });
    }
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let prefix = format!(".{name}.tmp-");
    remove_stale_temporaries(&dir, &prefix);
    // The writer's process id is in the name, so a sweep can tell a dead writer's temporary
    // from a live one.
    let mut tmp = tempfile::Builder::new()
        .prefix(&format!("{prefix}{}-", std::process::id()))
        .tempfile_in(&dir)
        .map_err(io(path))?;
    tmp.write_all(bytes).map_err(io(path))?;
    // Temporary files are private (0600); give the result the old file's permissions, or
    // those of an ordinary new file.
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let perms = std::fs::metadata(path)
            .map(|m| m.permissions())
            .unwrap_or_else(|_| std::fs::Permissions::from_mode(0o644));
        tmp.as_file().set_permissions(perms).map_err(io(path))?;
    }
    tmp.as_file().sync_all().map_err(io(path))?;
    tmp.persist(path).map_err(|e| CheckpointError::Io {
        path: path.to_path_buf(),
        source: e.error,
    })?;
    // Make the rename itself durable.
    if let Ok(d) = File::open(&dir) {
        d.sync_all().map_err(io(&dir))?;
    }
    Ok(())
}

/// Removes temporaries left by writers that died: those whose process id (in the name) is
/// no longer running. A live writer's temporary, another process's save in progress, is
/// left alone; so is anything whose writer cannot be told.
fn remove_stale_temporaries(dir: &Path, prefix: &str) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some(rest) = name.strip_prefix(prefix) else {
            continue;
        };
        let pid = rest.split('-').next().and_then(|p| p.parse::<u32>().ok());
        if pid.is_some_and(|pid| pid != std::process::id() && !process_alive(pid)) {
            let _ = std::fs::remove_file(entry.path());
        }
    }
}

/// Whether process `pid` is running; where that cannot be known, it is taken to be.
fn process_alive(pid: u32) -> bool {
    let proc = Path::new("/proc");
    !proc.is_dir() || proc.join(pid.to_string()).exists()
}

/// Reads a whole file that must be a regular file: a FIFO, a device or a directory is
/// refused by its type before anything is read (a FIFO would block, `/dev/zero` never ends),
/// and no more than the size the file had when opened is read.
pub(crate) fn read(path: &Path) -> Result<Vec<u8>, CheckpointError> {
    read_checking_prefix(path, 0, |_| Ok(()))
}

/// [`read`], calling `check` with the file's first `prefix` bytes (fewer if the file is
/// shorter) before the rest is read: a 2 GB file that is not a gradus file is refused after
/// eight bytes.
pub(crate) fn read_checking_prefix(
    path: &Path,
    prefix: usize,
    check: impl FnOnce(&[u8]) -> Result<(), CheckpointError>,
) -> Result<Vec<u8>, CheckpointError> {
    let not_regular = || CheckpointError::Io {
        path: path.to_path_buf(),
        source: std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            "not a regular file (a FIFO, device or directory cannot hold weights)",
        ),
    };
    // Checked before opening (opening a FIFO blocks until a writer comes) and again on the
    // open file (the path may have been replaced in between).
    if !std::fs::metadata(path).map_err(io(path))?.is_file() {
        return Err(not_regular());
    }
    let file = File::open(path).map_err(io(path))?;
    let meta = file.metadata().map_err(io(path))?;
    if !meta.is_file() {
        return Err(not_regular());
    }
    let mut file = file.take(meta.len());
    let mut bytes = Vec::new();
    (&mut file)
        .take(prefix as u64)
        .read_to_end(&mut bytes)
        .map_err(io(path))?;
    check(&bytes)?;
    bytes.reserve(meta.len().min(1 << 30) as usize);
    file.read_to_end(&mut bytes).map_err(io(path))?;
    Ok(bytes)
}
