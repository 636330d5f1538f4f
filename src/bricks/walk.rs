//! Walking tenant-made trees without recursion and with bounded memory and
//! file descriptors: directories are read with raw `getdents64` into one
//! fixed buffer, only the current directory is open, and the way back up is
//! `..` checked against a stack of 16-byte frames (no names). A tree 10,000
//! levels deep costs 160 KB of frames and never the call stack.

use std::ffi::CStr;
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};

use nix::errno::Errno;
use nix::fcntl::{AtFlags, OFlag, openat};
use nix::sys::stat::{Mode, SFlag, fstatat};

/// Bytes read per `getdents64`: a few hundred entries, whatever the directory's size.
const BUFFER: usize = 32 * 1024;
/// First read after a seek: enough for the entry sought, cheap when the
/// walk goes down again right after it.
const FIRST_READ: usize = 1024;
/// Offset of `d_name` in `struct linux_dirent64`.
const NAME_AT: usize = 19;

pub const DT_UNKNOWN: u8 = libc::DT_UNKNOWN;
pub const DT_DIR: u8 = libc::DT_DIR;

/// Where a directory lives: its file system, its mount and its inode.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DirId {
    pub dev: u64,
    pub mnt_id: u64,
    pub ino: u64,
}

impl DirId {
    /// Same file system seen through the same mount (a bind mount of the
    /// same file system has another mount id).
    pub fn same_mount(&self, other: &DirId) -> bool {
        self.dev == other.dev && self.mnt_id == other.mnt_id
    }
}

/// Device, mount id and inode of an open file.
pub fn dir_id(fd: BorrowedFd<'_>) -> io::Result<DirId> {
    // SAFETY: statx fills a zeroed plain-data struct.
    let mut stx: libc::statx = unsafe { std::mem::zeroed() };
    // SAFETY: valid descriptor, static empty path, pointer to a live struct.
    let rc = unsafe {
        libc::statx(
            fd.as_raw_fd(),
            c"".as_ptr(),
            libc::AT_EMPTY_PATH,
            libc::STATX_INO | libc::STATX_MNT_ID,
            &mut stx,
        )
    };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    let mnt_id = if stx.stx_mask & libc::STATX_MNT_ID != 0 {
        stx.stx_mnt_id
    } else {
        mnt_id_from_fdinfo(fd)?
    };
    Ok(DirId {
        dev: libc::makedev(stx.stx_dev_major, stx.stx_dev_minor),
        mnt_id,
        ino: stx.stx_ino,
    })
}

/// Kernels before 5.8 have no STATX_MNT_ID; fdinfo has said it since 3.15.
fn mnt_id_from_fdinfo(fd: BorrowedFd<'_>) -> io::Result<u64> {
    let text = std::fs::read_to_string(format!("/proc/self/fdinfo/{}", fd.as_raw_fd()))?;
    text.lines()
        .find_map(|l| l.strip_prefix("mnt_id:"))
        .and_then(|v| v.trim().parse().ok())
        .ok_or_else(|| io::Error::other("no mnt_id in /proc/self/fdinfo"))
}

/// One directory entry as `getdents64` gave it. Its name lives in the
/// stream's buffer until the next read.
#[derive(Clone, Copy, Debug)]
pub struct Entry {
    pub ino: u64,
    /// Offset to seek to for reading this entry again.
    pub start: i64,
    pub kind: u8,
    name_at: usize,
    name_len: usize,
}

/// Streaming reader of one directory at a time, over a fixed buffer.
pub struct DirStream {
    buf: Box<[u8]>,
    len: usize,
    pos: usize,
    /// Offset of the entry after the last one handed out.
    next_start: i64,
    /// Bytes the next read may fill.
    read_size: usize,
}

impl Default for DirStream {
    fn default() -> Self {
        Self::new()
    }
}

impl DirStream {
    pub fn new() -> DirStream {
        DirStream {
            buf: vec![0u8; BUFFER].into_boxed_slice(),
            len: 0,
            pos: 0,
            next_start: 0,
            read_size: FIRST_READ,
        }
    }

    /// Positions `dir` at `offset` (0, or an entry's `start`) and forgets
    /// what was buffered.
    pub fn seek(&mut self, dir: BorrowedFd<'_>, offset: i64) -> io::Result<()> {
        // SAFETY: lseek on a valid descriptor.
        if unsafe { libc::lseek(dir.as_raw_fd(), offset, libc::SEEK_SET) } < 0 {
            return Err(io::Error::last_os_error());
        }
        self.len = 0;
        self.pos = 0;
        self.next_start = offset;
        self.read_size = FIRST_READ;
        Ok(())
    }

    /// The next entry of `dir` other than `.` and `..`; None at the end.
    pub fn next_entry(&mut self, dir: BorrowedFd<'_>) -> io::Result<Option<Entry>> {
        loop {
            if self.pos >= self.len && !self.fill(dir)? {
                return Ok(None);
            }
            let rec = &self.buf[self.pos..self.len];
            let field = |at: usize, n: usize| -> io::Result<&[u8]> {
                rec.get(at..at + n)
                    .ok_or_else(|| io::Error::other("truncated directory entry"))
            };
            let ino = u64::from_ne_bytes(array(field(0, 8)?));
            let d_off = i64::from_ne_bytes(array(field(8, 8)?));
            let reclen = usize::from(u16::from_ne_bytes(array(field(16, 2)?)));
            let kind = field(18, 1)?[0];
            if reclen <= NAME_AT || reclen > rec.len() {
                return Err(io::Error::other("malformed directory entry"));
            }
            let name = CStr::from_bytes_until_nul(&rec[NAME_AT..reclen])
                .map_err(|_| io::Error::other("directory entry name without NUL"))?;
            let entry = Entry {
                ino,
                start: self.next_start,
                kind,
                name_at: self.pos + NAME_AT,
                name_len: name.to_bytes_with_nul().len(),
            };
            let dots = matches!(name.to_bytes(), b"." | b"..");
            self.pos += reclen;
            self.next_start = d_off;
            if !dots {
                return Ok(Some(entry));
            }
        }
    }

    pub fn name(&self, entry: &Entry) -> &CStr {
        let bytes = &self.buf[entry.name_at..entry.name_at + entry.name_len];
        // Checked when the entry was read; the buffer is unchanged since.
        CStr::from_bytes_with_nul(bytes).unwrap_or(c"")
    }

    fn fill(&mut self, dir: BorrowedFd<'_>) -> io::Result<bool> {
        let size = self.read_size.min(self.buf.len());
        // SAFETY: the kernel writes at most `size` bytes into our buffer.
        let n = unsafe {
            libc::syscall(
                libc::SYS_getdents64,
                dir.as_raw_fd(),
                self.buf.as_mut_ptr(),
                size,
            )
        };
        if n < 0 {
            return Err(io::Error::last_os_error());
        }
        self.read_size = self.buf.len();
        self.len = n as usize;
        self.pos = 0;
        Ok(n > 0)
    }
}

fn array<const N: usize>(bytes: &[u8]) -> [u8; N] {
    let mut out = [0u8; N];
    out.copy_from_slice(&bytes[..N]);
    out
}

/// Why a walk stopped.
#[derive(Debug, thiserror::Error)]
pub enum WalkError {
    #[error("{0}")]
    Io(#[from] io::Error),
    /// A directory on another file system or mount than where the walk began.
    #[error("{0}")]
    Crossed(String),
    /// `..` is not the directory the walk came down from.
    #[error("{0}")]
    Moved(String),
}

/// An ancestor of the current directory: its inode and where the entry the
/// walk went down through starts in it.
#[derive(Clone, Copy, Debug)]
struct Frame {
    ino: u64,
    resume: i64,
}

/// What going back up found.
#[derive(Debug)]
pub enum Ascended {
    /// The entry of the directory just left, read again at its offset; the
    /// stream goes on after it.
    Found(Entry),
    /// Not at its offset any more: the stream is back at offset 0, where the
    /// walk meets it again among the others.
    Rewound,
}

/// Depth-first position in a tree: the current directory, its ancestors as
/// frames, and a stream over the current directory. Every directory is
/// opened with O_NOFOLLOW and must be on the mount the walk began on.
pub struct TreeCursor {
    dir: OwnedFd,
    id: DirId,
    frames: Vec<Frame>,
    stream: DirStream,
}

impl TreeCursor {
    /// Opens directory `name` in `parent` as the top of a walk; it must be
    /// on the same mount as `parent`.
    pub fn open(parent: BorrowedFd<'_>, name: &CStr) -> Result<TreeCursor, WalkError> {
        let expected = dir_id(parent)?;
        let dir = open_dir_at(parent, name)?;
        let id = dir_id(dir.as_fd())?;
        if !id.same_mount(&expected) {
            return Err(crossed(name));
        }
        let mut stream = DirStream::new();
        stream.seek(dir.as_fd(), 0)?;
        Ok(TreeCursor {
            dir,
            id,
            frames: Vec::new(),
            stream,
        })
    }

    pub fn dir(&self) -> BorrowedFd<'_> {
        self.dir.as_fd()
    }

    /// Levels below the top (0 at the top).
    pub fn depth(&self) -> usize {
        self.frames.len()
    }

    pub fn next_entry(&mut self) -> io::Result<Option<Entry>> {
        self.stream.next_entry(self.dir.as_fd())
    }

    pub fn name(&self, entry: &Entry) -> &CStr {
        self.stream.name(entry)
    }

    /// The entry's type, asked of the file system when getdents did not say.
    /// None if it is gone.
    pub fn kind(&self, entry: &Entry) -> io::Result<Option<u8>> {
        if entry.kind != DT_UNKNOWN {
            return Ok(Some(entry.kind));
        }
        match fstatat(
            self.dir.as_fd(),
            self.name(entry),
            AtFlags::AT_SYMLINK_NOFOLLOW,
        ) {
            Ok(stat) => {
                let dir = SFlag::from_bits_truncate(stat.st_mode) & SFlag::S_IFMT == SFlag::S_IFDIR;
                Ok(Some(if dir { DT_DIR } else { libc::DT_REG }))
            }
            Err(Errno::ENOENT) => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    /// Makes the subdirectory `entry` the current directory, read from its start.
    pub fn descend(&mut self, entry: &Entry) -> Result<(), WalkError> {
        let child = open_dir_at(self.dir.as_fd(), self.name(entry))?;
        let id = dir_id(child.as_fd())?;
        if !id.same_mount(&self.id) {
            return Err(crossed(self.name(entry)));
        }
        self.frames.push(Frame {
            ino: self.id.ino,
            resume: entry.start,
        });
        self.dir = child;
        self.id = id;
        self.stream.seek(self.dir.as_fd(), 0)?;
        Ok(())
    }

    /// Goes back to the parent, which must be the directory the walk came
    /// down from, and looks for the entry just left at its recorded offset.
    pub fn ascend(&mut self) -> Result<Ascended, WalkError> {
        let frame = self
            .frames
            .pop()
            .ok_or_else(|| WalkError::Moved("already at the top of the walk".into()))?;
        let parent = open_dir_at(self.dir.as_fd(), c"..")?;
        let id = dir_id(parent.as_fd())?;
        if !id.same_mount(&self.id) || id.ino != frame.ino {
            return Err(WalkError::Moved(format!(
                "the parent of inode {} is no longer inode {}; was it moved?",
                self.id.ino, frame.ino
            )));
        }
        let child = self.id.ino;
        self.dir = parent;
        self.id = id;
        self.stream.seek(self.dir.as_fd(), frame.resume)?;
        if let Some(entry) = self.stream.next_entry(self.dir.as_fd())?
            && entry.ino == child
        {
            return Ok(Ascended::Found(entry));
        }
        self.stream.seek(self.dir.as_fd(), 0)?;
        Ok(Ascended::Rewound)
    }

    /// Reads the current directory again from its start.
    pub fn rewind(&mut self) -> io::Result<()> {
        self.stream.seek(self.dir.as_fd(), 0)
    }
}

/// A directory, never through a symlink.
pub fn open_dir_at(parent: BorrowedFd<'_>, name: &CStr) -> io::Result<OwnedFd> {
    openat(
        parent,
        name,
        OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
    .map_err(io::Error::from)
}

fn crossed(name: &CStr) -> WalkError {
    WalkError::Crossed(format!(
        "{} is on another file system or mount; not going in",
        name.to_string_lossy()
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;

    #[test]
    fn streams_every_entry_with_offsets_to_read_it_again() {
        let dir = crate::bricks::testing::scratch();
        for i in 0..3000 {
            fs::write(dir.path().join(format!("file-with-a-longish-name-{i}")), "").unwrap();
        }
        let fd = nix::fcntl::open(
            dir.path(),
            OFlag::O_RDONLY | OFlag::O_DIRECTORY,
            Mode::empty(),
        )
        .unwrap();
        let mut stream = DirStream::new();
        stream.seek(fd.as_fd(), 0).unwrap();
        let mut seen = 0;
        let mut middle = None;
        while let Some(entry) = stream.next_entry(fd.as_fd()).unwrap() {
            seen += 1;
            if seen == 1500 {
                middle = Some((entry, stream.name(&entry).to_owned()));
            }
        }
        assert_eq!(seen, 3000);
        let (entry, name) = middle.unwrap();
        stream.seek(fd.as_fd(), entry.start).unwrap();
        let again = stream.next_entry(fd.as_fd()).unwrap().unwrap();
        assert_eq!(again.ino, entry.ino);
        assert_eq!(stream.name(&again), name.as_c_str());
    }

    fn top(dir: &std::path::Path) -> (OwnedFd, TreeCursor) {
        let parent =
            nix::fcntl::open(dir, OFlag::O_RDONLY | OFlag::O_DIRECTORY, Mode::empty()).unwrap();
        let cursor = TreeCursor::open(parent.as_fd(), c"top").unwrap();
        (parent, cursor)
    }

    #[test]
    fn goes_down_and_finds_its_way_back_by_inode() {
        let dir = crate::bricks::testing::scratch();
        fs::create_dir_all(dir.path().join("top/b/c")).unwrap();
        let (_parent, mut cursor) = top(dir.path());
        let b = cursor.next_entry().unwrap().unwrap();
        assert_eq!(cursor.name(&b), c"b");
        cursor.descend(&b).unwrap();
        let c = cursor.next_entry().unwrap().unwrap();
        cursor.descend(&c).unwrap();
        assert_eq!(cursor.depth(), 2);
        assert!(cursor.next_entry().unwrap().is_none());
        match cursor.ascend().unwrap() {
            Ascended::Found(entry) => assert_eq!(cursor.name(&entry), c"c"),
            Ascended::Rewound => panic!("c not at its offset"),
        }
        assert!(cursor.next_entry().unwrap().is_none());
        assert!(matches!(cursor.ascend().unwrap(), Ascended::Found(_)));
        assert_eq!(cursor.depth(), 0);
        assert!(cursor.ascend().is_err(), "nothing above the top");
    }

    #[test]
    fn a_directory_moved_away_under_the_walk_stops_it() {
        let dir = crate::bricks::testing::scratch();
        fs::create_dir_all(dir.path().join("top/b/c")).unwrap();
        let (_parent, mut cursor) = top(dir.path());
        let b = cursor.next_entry().unwrap().unwrap();
        cursor.descend(&b).unwrap();
        fs::rename(dir.path().join("top/b"), dir.path().join("b")).unwrap();
        assert!(matches!(cursor.ascend(), Err(WalkError::Moved(_))));
    }

    #[test]
    fn never_enters_another_mount_of_the_same_file_system() {
        let dir = crate::bricks::testing::scratch();
        let other = crate::bricks::testing::scratch();
        fs::create_dir_all(dir.path().join("top/mnt")).unwrap();
        let _mount =
            crate::bricks::testing::TestMount::bind(other.path(), &dir.path().join("top/mnt"));
        let (_parent, mut cursor) = top(dir.path());
        let mnt = cursor.next_entry().unwrap().unwrap();
        assert!(matches!(cursor.descend(&mnt), Err(WalkError::Crossed(_))));
        assert_eq!(cursor.depth(), 0);
    }
}
