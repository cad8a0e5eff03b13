//! The snapshot archive: a shard's RocksDB checkpoint (a flat directory of files) and the log
//! sequence it covers, in one self-checking byte string that a broker can download and unpack
//! without trusting it.
//!
//! Format (all integers big-endian):
//!
//! ```text
//! "MQ9SNAP1"                      8 bytes, the magic (the 1 is the format's version)
//! shard                           u32
//! sequence                        u64  the last log entry the checkpoint holds
//! file count                      u32
//! per file:  name length          u16
//!            name                 UTF-8, a plain file name (no '/', not "." or "..")
//!            size                 u64
//!            contents             size bytes
//! SHA-256 of every byte above     32 bytes
//! ```
//!
//! Nothing follows the digest. Why our own format rather than tar: a checkpoint is a flat
//! directory of regular files, so the format needs only names and sizes; the trailing digest
//! makes a truncated or altered archive fail as a whole (tar would unpack a prefix happily), and
//! the header carries the sequence, so the archive cannot be paired with the wrong position in
//! the log. [`unpack`] streams (a shard's store can be larger than memory) and checks names
//! before it creates anything; the caller unpacks into a scratch directory and renames it into
//! place only once [`unpack`] returned `Ok`.

use std::fs::File;
use std::io::{self, BufReader, BufWriter, Read, Write};
use std::path::Path;

use sha2::{Digest, Sha256};

const MAGIC: &[u8; 8] = b"MQ9SNAP1";

/// What an archive says about itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    pub shard: u32,
    pub sequence: u64,
}

/// Why an archive was refused.
#[derive(Debug, thiserror::Error)]
pub enum ArchiveError {
    #[error("not a snapshot archive (bad magic)")]
    NotAnArchive,
    #[error("the archive ends early (truncated)")]
    Truncated,
    #[error("the archive names a file {0:?}, which is not a plain file name")]
    BadName(String),
    #[error("the archive's digest does not match its contents (corrupt)")]
    Digest,
    #[error("bytes follow the archive's digest")]
    TrailingBytes,
    #[error("{0}")]
    Io(#[from] io::Error),
}

/// Packs every file of `dir` (a checkpoint: regular files only) into `out`; the bytes written.
pub fn pack(dir: &Path, header: Header, out: impl Write) -> io::Result<u64> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        if !entry.file_type()?.is_file() {
            return Err(io::Error::other(format!(
                "{}: a checkpoint holds only files",
                entry.path().display()
            )));
        }
        let name = entry.file_name().into_string().map_err(|name| {
            io::Error::other(format!("{name:?}: a checkpoint file name is UTF-8"))
        })?;
        files.push(name);
    }
    files.sort();
    let mut out = Hashing::new(BufWriter::new(out));
    out.write_all(MAGIC)?;
    out.write_all(&header.shard.to_be_bytes())?;
    out.write_all(&header.sequence.to_be_bytes())?;
    out.write_all(&(files.len() as u32).to_be_bytes())?;
    for name in &files {
        let mut file = File::open(dir.join(name))?;
        let size = file.metadata()?.len();
        out.write_all(&(name.len() as u16).to_be_bytes())?;
        out.write_all(name.as_bytes())?;
        out.write_all(&size.to_be_bytes())?;
        // The size is written first: a file that changes meanwhile must fail, not mislead.
        let copied = io::copy(&mut (&mut file).take(size), &mut out)?;
        if copied != size {
            return Err(io::Error::other(format!("{name} shrank while packed")));
        }
    }
    let packed = out.count + 32;
    let (mut out, digest) = out.finish();
    out.write_all(&digest)?;
    out.flush()?;
    Ok(packed)
}

/// Unpacks an archive into `dir` (which must exist and be empty), syncing every file; what
/// the archive says about itself. On `Err`, `dir` holds a partial copy and must be discarded.
pub fn unpack(input: impl Read, dir: &Path) -> Result<Header, ArchiveError> {
    let mut input = Hashing::new(BufReader::new(input));
    let mut magic = [0; 8];
    read_exact(&mut input, &mut magic)?;
    if &magic != MAGIC {
        return Err(ArchiveError::NotAnArchive);
    }
    let header = Header {
        shard: u32::from_be_bytes(read_array(&mut input)?),
        sequence: u64::from_be_bytes(read_array(&mut input)?),
    };
    let files = u32::from_be_bytes(read_array(&mut input)?);
    for _ in 0..files {
        let length = u16::from_be_bytes(read_array(&mut input)?);
        let mut name = vec![0; usize::from(length)];
        read_exact(&mut input, &mut name)?;
        let name = String::from_utf8(name)
            .map_err(|e| ArchiveError::BadName(String::from_utf8_lossy(e.as_bytes()).into()))?;
        if name.is_empty() || name == "." || name == ".." || name.contains(['/', '\\', '\0']) {
            return Err(ArchiveError::BadName(name));
        }
        let size = u64::from_be_bytes(read_array(&mut input)?);
        let mut file = File::create_new(dir.join(&name))?;
        if io::copy(&mut (&mut input).take(size), &mut file)? != size {
            return Err(ArchiveError::Truncated);
        }
        file.sync_all()?;
    }
    let (mut input, digest) = input.finish();
    let mut stored = [0; 32];
    read_exact(&mut input, &mut stored)?;
    if stored != digest {
        return Err(ArchiveError::Digest);
    }
    if input.read(&mut [0])? != 0 {
        return Err(ArchiveError::TrailingBytes);
    }
    File::open(dir)?.sync_all()?;
    Ok(header)
}

fn read_exact(input: &mut impl Read, buffer: &mut [u8]) -> Result<(), ArchiveError> {
    input.read_exact(buffer).map_err(|e| match e.kind() {
        io::ErrorKind::UnexpectedEof => ArchiveError::Truncated,
        _ => ArchiveError::Io(e),
    })
}

fn read_array<const N: usize>(input: &mut impl Read) -> Result<[u8; N], ArchiveError> {
    let mut bytes = [0; N];
    read_exact(input, &mut bytes)?;
    Ok(bytes)
}

/// A reader or writer that hashes (and counts) every byte passing through it.
struct Hashing<T> {
    inner: T,
    digest: Sha256,
    count: u64,
}

impl<T> Hashing<T> {
    fn new(inner: T) -> Self {
        Hashing {
            inner,
            digest: Sha256::new(),
            count: 0,
        }
    }

    fn finish(self) -> (T, [u8; 32]) {
        (self.inner, self.digest.finalize().into())
    }
}

impl<R: Read> Read for Hashing<R> {
    fn read(&mut self, buffer: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buffer)?;
        self.digest.update(&buffer[..n]);
        self.count += n as u64;
        Ok(n)
    }
}

impl<W: Write> Write for Hashing<W> {
    fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(bytes)?;
        self.digest.update(&bytes[..n]);
        self.count += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn packed(header: Header) -> (tempfile::TempDir, Vec<u8>) {
        let source = tempfile::tempdir().unwrap();
        std::fs::write(source.path().join("000012.sst"), vec![7u8; 100_000]).unwrap();
        std::fs::write(source.path().join("CURRENT"), b"MANIFEST-000005\n").unwrap();
        std::fs::write(source.path().join("empty"), b"").unwrap();
        let mut archive = Vec::new();
        let size = pack(source.path(), header, &mut archive).unwrap();
        assert_eq!(size, archive.len() as u64);
        (source, archive)
    }

    #[test]
    fn an_archive_unpacks_to_the_files_and_header_it_was_packed_from() {
        let header = Header {
            shard: 3,
            sequence: 1234,
        };
        let (source, archive) = packed(header);
        let target = tempfile::tempdir().unwrap();
        assert_eq!(unpack(&archive[..], target.path()).unwrap(), header);
        for name in ["000012.sst", "CURRENT", "empty"] {
            let read = |dir: &Path| std::fs::read(dir.join(name)).unwrap();
            assert_eq!(read(target.path()), read(source.path()), "{name}");
        }
        assert_eq!(std::fs::read_dir(target.path()).unwrap().count(), 3);
    }

    #[test]
    fn a_truncated_archive_is_refused_wherever_it_is_cut() {
        let (_source, archive) = packed(Header {
            shard: 0,
            sequence: 9,
        });
        // Cut inside the header, inside a file, and inside the digest.
        for cut in [5, 30, archive.len() / 2, archive.len() - 1] {
            let target = tempfile::tempdir().unwrap();
            let refused = unpack(&archive[..cut], target.path());
            assert!(
                matches!(refused, Err(ArchiveError::Truncated)),
                "cut at {cut}: {refused:?}"
            );
        }
    }

    #[test]
    fn an_altered_or_extended_archive_is_refused() {
        let (_source, archive) = packed(Header {
            shard: 0,
            sequence: 9,
        });
        let mut altered = archive.clone();
        altered[archive.len() / 2] ^= 1;
        let target = tempfile::tempdir().unwrap();
        let refused = unpack(&altered[..], target.path());
        assert!(matches!(refused, Err(ArchiveError::Digest)), "{refused:?}");
        let mut extended = archive.clone();
        extended.push(0);
        let target = tempfile::tempdir().unwrap();
        let refused = unpack(&extended[..], target.path());
        assert!(
            matches!(refused, Err(ArchiveError::TrailingBytes)),
            "{refused:?}"
        );
    }

    #[test]
    fn a_name_that_leaves_the_directory_is_refused_before_anything_is_written() {
        let mut archive = MAGIC.to_vec();
        archive.extend(0u32.to_be_bytes());
        archive.extend(1u64.to_be_bytes());
        archive.extend(1u32.to_be_bytes());
        archive.extend(5u16.to_be_bytes());
        archive.extend(b"../x1");
        let target = tempfile::tempdir().unwrap();
        let refused = unpack(&archive[..], &target.path().join("inner"));
        assert!(
            matches!(refused, Err(ArchiveError::BadName(_))),
            "{refused:?}"
        );
        assert!(!target.path().join("x1").exists());
    }
}
