//! A small sorted map of byte strings packed into one allocation.
//!
//! Sessions hold two such maps (metadata and data). A session is read far
//! more often than it is written, so the layout favours reads: one buffer,
//! entries in key order, each `varint(key len) varint(value len) key value`.
//! Replies stream straight out of it; a write builds a new buffer.

#[derive(Clone, Default, PartialEq, Eq)]
pub struct FlatMap {
    buf: Box<[u8]>,
    count: u32,
    /// Sum of key and value lengths (saturating), kept so limits and totals
    /// need no walk over the entries. Fits in the padding after `count`.
    payload: u32,
}

fn payload_of(total: usize) -> u32 {
    u32::try_from(total).unwrap_or(u32::MAX)
}

impl std::fmt::Debug for FlatMap {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_map()
            .entries(
                self.iter()
                    .map(|(k, v)| (String::from_utf8_lossy(k), String::from_utf8_lossy(v))),
            )
            .finish()
    }
}

/// Why an encoded map was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FlatMapError {
    Truncated,
    Unordered,
}

/// Appends `v` as a LEB128 varint (also the length prefix of sealed data's
/// associated data, `core::seal`).
pub(crate) fn put_varint(out: &mut Vec<u8>, mut v: usize) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

fn get_varint(buf: &[u8], pos: &mut usize) -> Option<usize> {
    let mut v: usize = 0;
    for shift in (0..35).step_by(7) {
        let b = *buf.get(*pos)?;
        *pos += 1;
        v |= ((b & 0x7f) as usize) << shift;
        if b & 0x80 == 0 {
            return Some(v);
        }
    }
    None
}

fn varint_len(v: usize) -> usize {
    let mut n = 1;
    let mut v = v >> 7;
    while v > 0 {
        n += 1;
        v >>= 7;
    }
    n
}

/// Prefetches up to `lines` 64-byte cache lines of `bytes` (a hint: no
/// effect on results, nothing on other architectures).
#[inline]
pub fn prefetch(bytes: &[u8], lines: usize) {
    #[cfg(target_arch = "x86_64")]
    for off in (0..bytes.len()).step_by(64).take(lines) {
        // SAFETY: a prefetch never faults and reads nothing into the
        // program; the address is inside `bytes` anyway.
        unsafe {
            std::arch::x86_64::_mm_prefetch::<{ std::arch::x86_64::_MM_HINT_T0 }>(
                bytes.as_ptr().add(off).cast::<i8>(),
            )
        };
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = (bytes, lines);
}

/// Sorts `entries` by key and keeps, of several with one key, the one that
/// came last (the sort is stable, so it is the last of its run).
fn sort_last_wins<V>(entries: &mut Vec<(&[u8], V)>) {
    entries.sort_by(|a, b| a.0.cmp(b.0));
    entries.reverse();
    entries.dedup_by(|later, earlier| later.0 == earlier.0);
    entries.reverse();
}

fn entry_len(k: &[u8], v: &[u8]) -> usize {
    varint_len(k.len()) + varint_len(v.len()) + k.len() + v.len()
}

/// Appends entries, in key order, into a new map's buffer.
struct Builder {
    out: Vec<u8>,
    count: u32,
    payload: usize,
}

impl Builder {
    fn with_capacity(n: usize) -> Self {
        Builder {
            out: Vec::with_capacity(n),
            count: 0,
            payload: 0,
        }
    }

    fn push(&mut self, k: &[u8], v: &[u8]) {
        put_varint(&mut self.out, k.len());
        put_varint(&mut self.out, v.len());
        self.out.extend_from_slice(k);
        self.out.extend_from_slice(v);
        self.count = self.count.saturating_add(1);
        self.payload += k.len() + v.len();
    }

    fn finish(self) -> FlatMap {
        FlatMap {
            buf: self.out.into_boxed_slice(),
            count: self.count,
            payload: payload_of(self.payload),
        }
    }
}

/// Iterator over the entries of a [`FlatMap`], in key order.
pub struct Iter<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Iterator for Iter<'a> {
    type Item = (&'a [u8], &'a [u8]);

    fn next(&mut self) -> Option<Self::Item> {
        if self.pos >= self.buf.len() {
            return None;
        }
        let klen = get_varint(self.buf, &mut self.pos)?;
        let vlen = get_varint(self.buf, &mut self.pos)?;
        let kend = self.pos.checked_add(klen)?;
        let vend = kend.checked_add(vlen)?;
        let key = self.buf.get(self.pos..kend)?;
        let value = self.buf.get(kend..vend)?;
        self.pos = vend;
        Some((key, value))
    }
}

impl FlatMap {
    pub fn new() -> Self {
        Self::default()
    }

    /// Builds a map from pairs in any order; a later pair wins over an
    /// earlier one with the same key.
    pub fn from_pairs<'a, I>(pairs: I) -> Self
    where
        I: IntoIterator<Item = (&'a [u8], &'a [u8])>,
    {
        let mut entries: Vec<(&[u8], &[u8])> = pairs.into_iter().collect();
        sort_last_wins(&mut entries);
        Self::from_sorted(entries)
    }

    fn from_sorted(entries: Vec<(&[u8], &[u8])>) -> Self {
        let size: usize = entries.iter().map(|(k, v)| entry_len(k, v)).sum();
        let mut b = Builder::with_capacity(size);
        for (k, v) in entries {
            b.push(k, v);
        }
        b.finish()
    }

    /// Validates an encoded buffer (from RDB, RESTORE or replication):
    /// every length inside it is checked and keys must be strictly ascending.
    pub fn from_encoded(buf: &[u8]) -> Result<Self, FlatMapError> {
        let mut pos = 0;
        let mut count = 0u32;
        let mut payload = 0usize;
        let mut prev: Option<&[u8]> = None;
        while pos < buf.len() {
            let klen = get_varint(buf, &mut pos).ok_or(FlatMapError::Truncated)?;
            let vlen = get_varint(buf, &mut pos).ok_or(FlatMapError::Truncated)?;
            let kend = pos.checked_add(klen).ok_or(FlatMapError::Truncated)?;
            let vend = kend.checked_add(vlen).ok_or(FlatMapError::Truncated)?;
            if vend > buf.len() {
                return Err(FlatMapError::Truncated);
            }
            let key = &buf[pos..kend];
            if prev.is_some_and(|p| p >= key) {
                return Err(FlatMapError::Unordered);
            }
            prev = Some(key);
            payload += klen + vlen;
            pos = vend;
            count = count.checked_add(1).ok_or(FlatMapError::Truncated)?;
        }
        Ok(FlatMap {
            buf: buf.into(),
            count,
            payload: payload_of(payload),
        })
    }

    /// The encoded form, as stored and as persisted.
    pub fn as_bytes(&self) -> &[u8] {
        &self.buf
    }

    pub fn len(&self) -> usize {
        self.count as usize
    }

    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    pub fn iter(&self) -> Iter<'_> {
        Iter {
            buf: &self.buf,
            pos: 0,
        }
    }

    /// Asks the CPU to start loading the first cache lines of the map, so a
    /// read that first does other work (the reply's header) finds them there.
    #[inline]
    pub fn prefetch(&self) {
        prefetch(&self.buf, 4);
    }

    /// The same for every line of the map: for a write, which copies it all.
    #[inline]
    pub fn prefetch_all(&self) {
        prefetch(&self.buf, usize::MAX);
    }

    pub fn get(&self, key: &[u8]) -> Option<&[u8]> {
        self.iter().find(|(k, _)| *k == key).map(|(_, v)| v)
    }

    /// Sum of key and value lengths: what the data limit counts.
    pub fn payload_bytes(&self) -> usize {
        self.payload as usize
    }

    /// A new map with `set` written over this one and `unset` removed (a
    /// key both set and unset is set; a later pair in `set` wins). One pass
    /// over the stored entries merged with the sorted changes.
    pub fn merged(&self, set: &[(&[u8], &[u8])], unset: &[&[u8]]) -> Self {
        let mut changes: Vec<(&[u8], Option<&[u8]>)> = unset
            .iter()
            .map(|k| (*k, None))
            .chain(set.iter().map(|(k, v)| (*k, Some(*v))))
            .collect();
        sort_last_wins(&mut changes);
        // Two passes: the first sizes the buffer exactly, so the second
        // never reallocates (nor does boxing it).
        let mut size = 0;
        self.merge_walk(&changes, |k, v| size += entry_len(k, v));
        let mut b = Builder::with_capacity(size);
        self.merge_walk(&changes, |k, v| b.push(k, v));
        b.finish()
    }

    /// Calls `emit` with every entry of this map merged with `changes`
    /// (sorted, one per key; `None` removes), in key order.
    fn merge_walk<'a>(
        &'a self,
        changes: &[(&'a [u8], Option<&'a [u8]>)],
        mut emit: impl FnMut(&[u8], &[u8]),
    ) {
        let mut old = self.iter().peekable();
        for &(key, change) in changes {
            while let Some((k, v)) = old.next_if(|(k, _)| *k < key) {
                emit(k, v);
            }
            old.next_if(|(k, _)| *k == key);
            if let Some(v) = change {
                emit(key, v);
            }
        }
        for (k, v) in old {
            emit(k, v);
        }
    }

    /// Bytes held on the heap, for `MEMORY USAGE`.
    pub fn heap_bytes(&self) -> usize {
        self.buf.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn later_pair_wins_and_order_is_sorted() {
        let m = FlatMap::from_pairs([(&b"b"[..], &b"1"[..]), (b"a", b"2"), (b"b", b"3")]);
        let v: Vec<_> = m.iter().collect();
        assert_eq!(v, vec![(&b"a"[..], &b"2"[..]), (&b"b"[..], &b"3"[..])]);
        assert_eq!(m.len(), 2);
        assert_eq!(m.get(b"b"), Some(&b"3"[..]));
        assert_eq!(m.payload_bytes(), 4);
    }

    #[test]
    fn merge_sets_and_unsets() {
        let m = FlatMap::from_pairs([(&b"a"[..], &b"1"[..]), (b"b", b"2")]);
        let m2 = m.merged(&[(b"c", b"3"), (b"a", b"9")], &[b"b", b"zz"]);
        let v: Vec<_> = m2.iter().collect();
        assert_eq!(v, vec![(&b"a"[..], &b"9"[..]), (&b"c"[..], &b"3"[..])]);
    }

    #[test]
    fn decoder_refuses_bad_buffers() {
        let m = FlatMap::from_pairs([(&b"a"[..], &b"1"[..]), (b"b", b"2")]);
        let bytes = m.as_bytes();
        assert_eq!(FlatMap::from_encoded(bytes).unwrap(), m);
        assert_eq!(
            FlatMap::from_encoded(&bytes[..bytes.len() - 1]),
            Err(FlatMapError::Truncated)
        );
        let swapped = [&bytes[4..], &bytes[..4]].concat();
        assert_eq!(FlatMap::from_encoded(&swapped), Err(FlatMapError::Unordered));
        assert_eq!(FlatMap::from_encoded(&[0xff; 9]), Err(FlatMapError::Truncated));
    }

    #[test]
    fn long_values_use_multibyte_lengths() {
        let big = vec![7u8; 70_000];
        let m = FlatMap::from_pairs([(&b"k"[..], &big[..])]);
        assert_eq!(m.get(b"k").map(|v| v.len()), Some(70_000));
        assert_eq!(FlatMap::from_encoded(m.as_bytes()).unwrap(), m);
    }
}
