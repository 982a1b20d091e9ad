//! Atomic file replacement: a reader of the path sees either the old file or the whole new one,
//! never a partial write, even if the process or the machine stops midway.

use kiln_compiler::{Error, Result};
use std::fs::{self, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

/// Distinguishes the temporary files of concurrent writes within one process.
static TEMP_COUNTER: AtomicU64 = AtomicU64::new(0);

fn io_error(path: &Path) -> impl FnOnce(std::io::Error) -> Error + '_ {
    move |source| Error::Io {
        path: path.display().to_string(),
        source,
    }
}

/// The prefix and suffix of kiln's temporary files: `.kiln-<pid>-<counter>.tmp`, short enough
/// to fit wherever the target's name fits (any name of 30 bytes or more, and `NAME_MAX` is 255),
/// and carrying the writer's process id so that leftovers of dead processes can be recognised.
const TEMP_PREFIX: &str = ".kiln-";
const TEMP_SUFFIX: &str = ".tmp";

/// Writes `bytes` to `path` atomically: they go to a new temporary file in the same directory
/// (`.kiln-<pid>-<counter>.tmp`), which is flushed to disk (fsync) and then renamed over
/// `path`; the directory is synced too, so the rename is durable. On failure the temporary
/// file is removed and `path` is unchanged. Temporary files of this scheme left in the
/// directory by processes that no longer exist (killed mid-write) are removed first; those of
/// live processes, which may be saving right now, are never touched.
pub(crate) fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    if path.file_name().is_none() {
        return Err(Error::InvalidArgument(format!(
            "`{}` does not name a file",
            path.display()
        )));
    }
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    remove_stale_temporaries(dir);
    let temp: PathBuf = dir.join(format!(
        "{TEMP_PREFIX}{}-{}{TEMP_SUFFIX}",
        std::process::id(),
        TEMP_COUNTER.fetch_add(1, Ordering::Relaxed)
    ));
    let written =
        write_synced(&temp, bytes).and_then(|()| fs::rename(&temp, path).map_err(io_error(path)));
    if written.is_err() {
        let _ = fs::remove_file(&temp);
    }
    written?;
    sync_dir(dir)
}

/// The process id in a temporary file name of kiln's scheme, if `name` is one.
fn temp_owner(name: &str) -> Option<u32> {
    let rest = name.strip_prefix(TEMP_PREFIX)?.strip_suffix(TEMP_SUFFIX)?;
    let (pid, counter) = rest.split_once('-')?;
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    (digits(pid) && digits(counter))
        .then(|| pid.parse().ok())
        .flatten()
}

/// Whether process `pid` may still be running (unknown counts as alive).
fn may_be_alive(pid: u32) -> bool {
    if pid == std::process::id() {
        return true;
    }
    // Without a mounted procfs liveness is unknown: keep the file.
    if !cfg!(target_os = "linux") || !Path::new("/proc/self").exists() {
        return true;
    }
    // /proc lists every live process (zombies too, which only delays their cleanup).
    Path::new(&format!("/proc/{pid}")).exists()
}

/// Removes temporary files of kiln's scheme in `dir` whose writer process no longer exists.
/// Best effort: a directory that cannot be listed, or a file that vanished, is left alone.
fn remove_stale_temporaries(dir: &Path) {
    let Ok(entries) = fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(pid) = name.to_str().and_then(temp_owner) else {
            continue;
        };
        if !may_be_alive(pid) && entry.file_type().is_ok_and(|t| t.is_file()) {
            let _ = fs::remove_file(entry.path());
        }
    }
}

/// Creates `path` (which must not exist), writes `bytes` and waits until they are on disk.
fn write_synced(path: &Path, bytes: &[u8]) -> Result<()> {
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(path)
        .map_err(io_error(path))?;
    file.write_all(bytes).map_err(io_error(path))?;
    file.sync_all().map_err(io_error(path))
}

/// Makes a rename in `dir` durable (a no-op where directories cannot be opened for syncing).
fn sync_dir(dir: &Path) -> Result<()> {
    #[cfg(unix)]
    fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io_error(dir))?;
    #[cfg(not(unix))]
    let _ = dir;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn temporary_names_are_recognised_exactly() {
        assert_eq!(temp_owner(".kiln-123-4.tmp"), Some(123));
        for other in [
            ".kiln-123.tmp",
            ".kiln--4.tmp",
            ".kiln-1x-4.tmp",
            "kiln-1-4.tmp",
            ".kiln-1-4.tmp~",
        ] {
            assert_eq!(temp_owner(other), None, "{other}");
        }
        assert!(may_be_alive(std::process::id()));
    }
}
