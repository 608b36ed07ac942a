//! [`OverlayStorage`]: another storage seen read-only. Everything the engine writes (the
//! replay of a log, a checkpoint, a cleanup) lands in memory on top of it; the storage below
//! is only read. An offline checker opens a volume through it and sees exactly what an open
//! would see, without changing a byte on disk.
//!
//! Memory: whole pages the engine wrote, plus punched ranges. Opening a volume writes at
//! most its log's replay and a checkpoint's records (the log is bounded), so an overlay
//! stays small whatever the volume's size.

use std::collections::{BTreeMap, HashMap};
use std::io;
use std::sync::Arc;

use parking_lot::Mutex;

use super::{Storage, StorageFile};

/// Granularity of the copied-on-write pages.
const PAGE: u64 = 4096;

/// A read-only view of `base` that keeps every change in memory.
pub struct OverlayStorage {
    base: Arc<dyn Storage>,
    names: Mutex<Option<HashMap<String, Entry>>>,
}

impl std::fmt::Debug for OverlayStorage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("OverlayStorage(..)")
    }
}

#[derive(Clone)]
enum Entry {
    /// Still the base file of this name, untouched.
    Base(String),
    /// Opened or created through the overlay.
    Open(Arc<OverlayFile>),
}

impl OverlayStorage {
    /// A view of `base` in which nothing reaches `base`.
    pub fn new(base: Arc<dyn Storage>) -> Self {
        Self {
            base,
            names: Mutex::new(None),
        }
    }

    /// Runs `f` on the name table, filled from the base's listing on first use.
    fn with_names<T>(
        &self,
        f: impl FnOnce(&mut HashMap<String, Entry>) -> io::Result<T>,
    ) -> io::Result<T> {
        let mut names = self.names.lock();
        if names.is_none() {
            let listed = self.base.list()?;
            *names = Some(
                listed
                    .into_iter()
                    .map(|n| (n.clone(), Entry::Base(n)))
                    .collect(),
            );
        }
        match names.as_mut() {
            Some(table) => f(table),
            None => Err(io::Error::other("overlay name table missing")),
        }
    }
}

fn not_found(name: &str) -> io::Error {
    io::Error::new(io::ErrorKind::NotFound, format!("no file {name:?}"))
}

impl Storage for OverlayStorage {
    fn open_file(&self, name: &str) -> io::Result<Arc<dyn StorageFile>> {
        self.with_names(|names| {
            let entry = names.get(name).cloned().ok_or_else(|| not_found(name))?;
            let file = match entry {
                Entry::Open(file) => file,
                Entry::Base(base_name) => {
                    let base = self.base.open_file(&base_name)?;
                    let file = Arc::new(OverlayFile::over(base)?);
                    names.insert(name.to_string(), Entry::Open(file.clone()));
                    file
                }
            };
            Ok(file as Arc<dyn StorageFile>)
        })
    }

    fn create_file(&self, name: &str) -> io::Result<Arc<dyn StorageFile>> {
        self.with_names(|names| {
            let file = Arc::new(OverlayFile::empty());
            names.insert(name.to_string(), Entry::Open(file.clone()));
            Ok(file as Arc<dyn StorageFile>)
        })
    }

    fn exists(&self, name: &str) -> io::Result<bool> {
        self.with_names(|names| Ok(names.contains_key(name)))
    }

    fn remove_file(&self, name: &str) -> io::Result<()> {
        self.with_names(|names| {
            names
                .remove(name)
                .map(|_| ())
                .ok_or_else(|| not_found(name))
        })
    }

    fn rename(&self, from: &str, to: &str) -> io::Result<()> {
        self.with_names(|names| {
            let entry = names.remove(from).ok_or_else(|| not_found(from))?;
            names.insert(to.to_string(), entry);
            Ok(())
        })
    }

    fn sync_dir(&self) -> io::Result<()> {
        Ok(())
    }

    fn list(&self) -> io::Result<Vec<String>> {
        self.with_names(|names| Ok(names.keys().cloned().collect()))
    }

    fn free_space(&self) -> io::Result<Option<u64>> {
        self.base.free_space()
    }

    /// Locks the directory below, so a checker never reads a volume a daemon has open.
    fn lock(&self) -> io::Result<()> {
        self.base.lock()
    }
}

/// One file: the base's bytes under the pages and punches written through the overlay.
struct OverlayFile {
    base: Option<Arc<dyn StorageFile>>,
    state: Mutex<Changes>,
}

struct Changes {
    /// Length as the overlay sees it.
    size: u64,
    /// Length of the base below (bytes past it read as zeros).
    base_size: u64,
    /// Whole pages written through the overlay (they win over everything below).
    pages: BTreeMap<u64, Box<[u8]>>,
    /// Ranges punched through the overlay, merged, by start → end (a log's replay may punch
    /// a million small ranges; a read looks only at those it overlaps); a page
    /// written later is whole in `pages`, so the order between them does not matter.
    punched: BTreeMap<u64, u64>,
}

impl OverlayFile {
    fn over(base: Arc<dyn StorageFile>) -> io::Result<Self> {
        let size = base.size()?;
        Ok(Self {
            base: Some(base),
            state: Mutex::new(Changes {
                size,
                base_size: size,
                pages: BTreeMap::new(),
                punched: BTreeMap::new(),
            }),
        })
    }

    fn empty() -> Self {
        Self {
            base: None,
            state: Mutex::new(Changes {
                size: 0,
                base_size: 0,
                pages: BTreeMap::new(),
                punched: BTreeMap::new(),
            }),
        }
    }

    /// The bytes below the written pages at `offset..offset + buf.len()`: the base, zeros
    /// past it, punched ranges zeroed.
    fn read_below(&self, c: &Changes, buf: &mut [u8], offset: u64) -> io::Result<()> {
        buf.fill(0);
        let len = buf.len() as u64;
        let in_base = c.base_size.saturating_sub(offset).min(len);
        if let (Some(base), true) = (&self.base, in_base > 0) {
            let n = usize::try_from(in_base).map_err(io::Error::other)?;
            base.read_at(&mut buf[..n], offset)?;
        }
        let read_end = offset.saturating_add(len);
        // The range starting before the read that may reach into it, then those inside.
        let before = c.punched.range(..offset).next_back();
        let inside = c.punched.range(offset..read_end);
        for (&start, &end) in before.into_iter().chain(inside) {
            let from = start.max(offset);
            let to = end.min(offset.saturating_add(len));
            if from < to {
                let (a, b) = ((from - offset) as usize, (to - offset) as usize);
                buf[a..b].fill(0);
            }
        }
        Ok(())
    }

    fn read_locked(&self, c: &Changes, buf: &mut [u8], offset: u64) -> io::Result<()> {
        self.read_below(c, buf, offset)?;
        let end = offset.saturating_add(buf.len() as u64);
        let first = offset / PAGE;
        for (&page, bytes) in c.pages.range(first..end.div_ceil(PAGE)) {
            let page_start = page * PAGE;
            let from = page_start.max(offset);
            let to = (page_start + PAGE).min(end);
            let src = &bytes[(from - page_start) as usize..(to - page_start) as usize];
            buf[(from - offset) as usize..(to - offset) as usize].copy_from_slice(src);
        }
        // Past the overlay's length everything reads as zeros (a shrunk or new file).
        if end > c.size {
            let from = c.size.saturating_sub(offset) as usize;
            buf[from..].fill(0);
        }
        Ok(())
    }
}

/// Adds `start..end` to `ranges` (start → end, disjoint), merging what it touches.
fn punch_range(ranges: &mut BTreeMap<u64, u64>, mut start: u64, mut end: u64) {
    if start >= end {
        return;
    }
    if let Some((&s, &e)) = ranges.range(..=start).next_back() {
        if e >= start {
            start = s;
            end = end.max(e);
        }
    }
    let covered: Vec<u64> = ranges.range(start..=end).map(|(s, _)| *s).collect();
    for s in covered {
        if let Some(e) = ranges.remove(&s) {
            end = end.max(e);
        }
    }
    ranges.insert(start, end);
}

impl StorageFile for OverlayFile {
    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        let c = self.state.lock();
        self.read_locked(&c, buf, offset)
    }

    fn write_at(&self, data: &[u8], offset: u64) -> io::Result<()> {
        let mut c = self.state.lock();
        let end = offset
            .checked_add(data.len() as u64)
            .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "write past 2^64"))?;
        let mut at = offset;
        while at < end {
            let page = at / PAGE;
            let page_start = page * PAGE;
            let to = (page_start + PAGE).min(end);
            if !c.pages.contains_key(&page) {
                let mut bytes = vec![0u8; PAGE as usize].into_boxed_slice();
                self.read_locked(&c, &mut bytes, page_start)?;
                c.pages.insert(page, bytes);
            }
            if let Some(bytes) = c.pages.get_mut(&page) {
                let src = &data[(at - offset) as usize..(to - offset) as usize];
                bytes[(at - page_start) as usize..(to - page_start) as usize].copy_from_slice(src);
            }
            at = to;
        }
        c.size = c.size.max(end);
        Ok(())
    }

    fn punch_hole(&self, offset: u64, len: u64) -> io::Result<()> {
        let mut c = self.state.lock();
        let end = offset.saturating_add(len);
        // Pages inside the range go; pages it cuts keep their other bytes.
        let touched: Vec<u64> = c
            .pages
            .range(offset / PAGE..end.div_ceil(PAGE))
            .map(|(p, _)| *p)
            .collect();
        for page in touched {
            let page_start = page * PAGE;
            if offset <= page_start && page_start + PAGE <= end {
                c.pages.remove(&page);
            } else if let Some(bytes) = c.pages.get_mut(&page) {
                let from = offset.max(page_start) - page_start;
                let to = end.min(page_start + PAGE) - page_start;
                bytes[from as usize..to as usize].fill(0);
            }
        }
        punch_range(&mut c.punched, offset, end);
        Ok(())
    }

    fn size(&self) -> io::Result<u64> {
        Ok(self.state.lock().size)
    }

    fn allocated(&self) -> io::Result<u64> {
        let c = self.state.lock();
        let below = match &self.base {
            Some(base) => base.allocated()?,
            None => 0,
        };
        Ok(below + c.pages.len() as u64 * PAGE)
    }

    fn sync_data(&self) -> io::Result<()> {
        Ok(())
    }

    /// The base's data regions (within the overlay's length) and the written pages, merged.
    fn data_regions(&self) -> io::Result<Vec<(u64, u64)>> {
        let c = self.state.lock();
        let mut regions = match &self.base {
            Some(base) => base.data_regions()?,
            None => Vec::new(),
        };
        regions.extend(c.pages.keys().map(|p| (p * PAGE, (p + 1) * PAGE)));
        regions.retain(|(start, _)| *start < c.size);
        for r in &mut regions {
            r.1 = r.1.min(c.size);
        }
        regions.sort_unstable();
        let mut merged: Vec<(u64, u64)> = Vec::with_capacity(regions.len());
        for (start, end) in regions {
            match merged.last_mut() {
                Some(last) if start <= last.1 => last.1 = last.1.max(end),
                _ => merged.push((start, end)),
            }
        }
        Ok(merged)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::MemStorage;

    fn base_with(name: &str, bytes: &[u8]) -> Arc<MemStorage> {
        let base = Arc::new(MemStorage::new());
        let f = base.create_file(name).unwrap();
        f.write_at(bytes, 0).unwrap();
        base
    }

    #[test]
    fn writes_punches_renames_and_removes_stay_in_memory() {
        let original: Vec<u8> = (0..3 * PAGE).map(|i| (i % 251) as u8 + 1).collect();
        let base = base_with("data", &original);
        let overlay = OverlayStorage::new(base.clone());

        let f = overlay.open_file("data").unwrap();
        f.write_at(&[0xAA; 100], PAGE - 50).unwrap(); // across two pages
        f.punch_hole(2 * PAGE + 10, 20).unwrap();
        f.write_at(&[0xBB; 8], 2 * PAGE + 12).unwrap(); // into the punched range
        f.write_at(&[0xCC; 4], 5 * PAGE).unwrap(); // past the end: grows

        let mut expect = original.clone();
        expect[(PAGE - 50) as usize..(PAGE + 50) as usize].fill(0xAA);
        expect[(2 * PAGE + 10) as usize..(2 * PAGE + 30) as usize].fill(0);
        expect[(2 * PAGE + 12) as usize..(2 * PAGE + 20) as usize].fill(0xBB);
        expect.resize(5 * PAGE as usize, 0);
        expect.extend_from_slice(&[0xCC; 4]);
        assert_eq!(f.size().unwrap(), expect.len() as u64);
        let mut got = vec![0u8; expect.len() + 10];
        f.read_at(&mut got, 0).unwrap();
        assert_eq!(&got[..expect.len()], &expect[..]);
        assert!(got[expect.len()..].iter().all(|b| *b == 0));

        // Its data regions: the base's (all of it here) and the page written past the end.
        assert_eq!(
            f.data_regions().unwrap(),
            vec![(0, 3 * PAGE), (5 * PAGE, 5 * PAGE + 4)]
        );

        // A second open sees the same changes.
        let mut again = vec![0u8; 100];
        overlay
            .open_file("data")
            .unwrap()
            .read_at(&mut again, PAGE - 50)
            .unwrap();
        assert_eq!(again, vec![0xAA; 100]);

        // Names change in the overlay only.
        overlay
            .create_file("new")
            .unwrap()
            .write_at(b"x", 0)
            .unwrap();
        overlay.rename("new", "renamed").unwrap();
        overlay.remove_file("data").unwrap();
        let mut names = overlay.list().unwrap();
        names.sort();
        assert_eq!(names, vec!["renamed".to_string()]);
        assert!(!overlay.exists("data").unwrap());

        // The base never changed.
        assert_eq!(base.read_file("data").unwrap(), original);
        assert_eq!(base.list().unwrap(), vec!["data".to_string()]);
    }

    #[test]
    fn punched_ranges_merge_into_disjoint_ones() {
        let mut r = BTreeMap::new();
        for (a, b) in [
            (10, 20),
            (30, 40),
            (18, 31),
            (50, 60),
            (5, 6),
            (60, 61),
            (0, 0),
        ] {
            punch_range(&mut r, a, b);
        }
        assert_eq!(
            r.into_iter().collect::<Vec<_>>(),
            vec![(5, 6), (10, 40), (50, 61)]
        );
    }

    #[test]
    fn a_created_file_hides_the_base_file_of_its_name() {
        let base = base_with("manifest", b"old contents");
        let overlay = OverlayStorage::new(base.clone());
        let f = overlay.create_file("manifest").unwrap();
        assert_eq!(f.size().unwrap(), 0);
        f.write_at(b"new", 0).unwrap();
        let mut got = vec![0u8; 12];
        overlay
            .open_file("manifest")
            .unwrap()
            .read_at(&mut got, 0)
            .unwrap();
        assert_eq!(&got, b"new\0\0\0\0\0\0\0\0\0");
        assert_eq!(base.read_file("manifest").unwrap(), b"old contents");
    }

    /// Every file of `base` with its bytes, by name.
    fn files(base: &MemStorage) -> Vec<(String, Vec<u8>)> {
        let mut names = base.list().unwrap();
        names.sort();
        names
            .into_iter()
            .map(|n| (n.clone(), base.read_file(&n).unwrap()))
            .collect()
    }

    #[test]
    fn a_volume_opened_through_an_overlay_recovers_without_touching_the_disk() {
        use crate::{Volume, VolumeOptions};
        let base = Arc::new(MemStorage::new());
        {
            let vol = Volume::create(
                base.clone(),
                1 << 20,
                crate::Geometry::default(),
                VolumeOptions::write_back(),
            )
            .unwrap();
            vol.write(0, &[7u8; 8192]).unwrap();
            vol.flush().unwrap();
            vol.write(8192, &[9u8; 4096]).unwrap();
            // Dropped without a checkpoint: the next open replays the log.
        }
        let before = files(&base);
        let overlay = Arc::new(OverlayStorage::new(base.clone()));
        let vol = Volume::open(overlay, VolumeOptions::write_back()).unwrap();
        assert_eq!(vol.read(0, 8192).unwrap(), vec![7u8; 8192]);
        assert_eq!(vol.read(8192, 4096).unwrap(), vec![9u8; 4096]);
        assert!(vol.verify().unwrap().bad.is_empty());
        drop(vol);
        let after = files(&base);
        assert_eq!(before, after);

        // The same open straight on the base does write (replay, checkpoint): what the
        // overlay kept from the disk.
        drop(Volume::open(base.clone(), VolumeOptions::write_back()).unwrap());
        let direct = files(&base);
        assert_ne!(before, direct);
    }
}
