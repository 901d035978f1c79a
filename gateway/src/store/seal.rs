//! Bodies encrypted at rest (`[storage] encrypt_bodies`): a segmented
//! AES-256-GCM format that is written and read as a stream (the STREAM
//! construction of Hoang, Reyhanitabar, Rogaway and Vizár, 2015), so a body
//! of any size is sealed and opened in 64 KiB steps.
//!
//! ```text
//! header   "\0EMLAENC" | version 1 | log2(segment size) = 16 | key id (u32 BE) | nonce prefix (7 random bytes)
//! segment  AES-256-GCM(data key, nonce = prefix | counter (u32 BE) | last (0 or 1), aad = header) of
//!          64 KiB of plaintext (the last: 0..=64 KiB), then its 16-byte tag
//! ```
//!
//! Every segment but the last holds exactly one segment size of plaintext;
//! the last holds 1 to 64 KiB (none only for an empty body).
//! The counter in the nonce detects reordered, swapped or dropped segments;
//! the last flag detects a body cut at a segment boundary; the header as
//! associated data ties each segment to its key id and nonce prefix. A
//! file swapped for another sealed body opens, but to other plaintext: the
//! store checks the plaintext's SHA-256 against the body's name.
//!
//! The data keys are wrapped by the key-encryption key with AES-256-GCM
//! too ([`Kek::wrap_key`]); [`keys`](super::keys) keeps them.

use std::collections::BTreeMap;
use std::io::{self, Read, Write};
use std::sync::Arc;

use ring::aead::{Aad, LessSafeKey, Nonce, UnboundKey, AES_256_GCM, NONCE_LEN};
use ring::rand::{SecureRandom, SystemRandom};

/// The first bytes of a sealed body; no message starts with NUL.
pub const MAGIC: [u8; 8] = *b"\0EMLAENC";
/// The format version this code writes and reads.
pub const VERSION: u8 = 1;
/// log2 of the segment size written (64 KiB).
const SEGMENT_LOG2: u8 = 16;
/// Bytes of the random nonce prefix.
const PREFIX_LEN: usize = 7;
/// Bytes of the header.
pub const HEADER_LEN: usize = MAGIC.len() + 2 + 4 + PREFIX_LEN;
/// Bytes of a GCM tag.
const TAG_LEN: usize = 16;
/// Bytes of a data key (and of the key-encryption key).
pub const KEY_LEN: usize = 32;

/// Why a sealed body (or a wrapped key) could not be opened.
#[derive(Debug)]
pub enum SealError {
    /// The header is short, has another magic, version or segment size.
    Header(String),
    /// The header names a data key the keyring does not hold.
    UnknownKey(u32),
    /// A segment does not authenticate: edited, swapped, reordered, or
    /// sealed under another key.
    Tampered {
        /// The segment's number, from 0.
        segment: u32,
    },
    /// The body ends without its last segment (cut at a segment boundary
    /// or inside one).
    Truncated {
        /// The first segment missing or cut.
        segment: u32,
    },
    /// More segments than the 32-bit counter numbers (256 TiB).
    TooLarge,
    /// Reading or writing the underlying bytes failed.
    Io(io::Error),
}

impl std::fmt::Display for SealError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SealError::Header(e) => write!(f, "not a readable sealed body: {e}"),
            SealError::UnknownKey(id) => write!(
                f,
                "sealed under data key {id}, which the key table does not hold (see `emla keys list`)"
            ),
            SealError::Tampered { segment } => write!(
                f,
                "segment {segment} does not authenticate (AES-GCM tag): the body was altered, \
                 its segments reordered, or it is not sealed under the key its header names"
            ),
            SealError::Truncated { segment } => write!(
                f,
                "the body is truncated: segment {segment} is missing or cut short"
            ),
            SealError::TooLarge => write!(f, "more than 2^32 segments"),
            SealError::Io(e) => write!(f, "{e}"),
        }
    }
}

impl std::error::Error for SealError {}

impl From<SealError> for io::Error {
    fn from(e: SealError) -> io::Error {
        match e {
            SealError::Io(e) => e,
            other => io::Error::new(io::ErrorKind::InvalidData, other),
        }
    }
}

impl SealError {
    /// The [`SealError`] an I/O error carries, or the I/O error itself.
    pub fn from_io(e: io::Error) -> SealError {
        if !e.get_ref().is_some_and(|i| i.is::<SealError>()) {
            return SealError::Io(e);
        }
        match e.into_inner().map(|i| i.downcast::<SealError>()) {
            Some(Ok(inner)) => *inner,
            _ => SealError::Header("an error that was not kept".into()),
        }
    }
}

/// One data key: AES-256-GCM, named by its id.
pub struct DataKey {
    id: u32,
    key: LessSafeKey,
}

impl std::fmt::Debug for DataKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DataKey").field("id", &self.id).finish()
    }
}

impl DataKey {
    /// The key `bytes`, named `id`.
    pub fn new(id: u32, bytes: &[u8; KEY_LEN]) -> DataKey {
        DataKey {
            id,
            key: aes_key(bytes),
        }
    }

    /// Its id (in every header it seals).
    pub fn id(&self) -> u32 {
        self.id
    }
}

fn aes_key(bytes: &[u8; KEY_LEN]) -> LessSafeKey {
    LessSafeKey::new(UnboundKey::new(&AES_256_GCM, bytes).expect("32 bytes is an AES-256 key"))
}

/// The data keys known, and the one new bodies are sealed under.
#[derive(Debug, Default)]
pub struct Keyring {
    keys: BTreeMap<u32, Arc<DataKey>>,
}

impl Keyring {
    /// A keyring of `keys`; the highest id is current.
    pub fn new(keys: impl IntoIterator<Item = DataKey>) -> Keyring {
        Keyring {
            keys: keys.into_iter().map(|k| (k.id, Arc::new(k))).collect(),
        }
    }

    /// The key new bodies are sealed under (the newest), if any.
    pub fn current(&self) -> Option<&Arc<DataKey>> {
        self.keys.values().next_back()
    }

    /// The key `id`, if held.
    pub fn get(&self, id: u32) -> Option<&Arc<DataKey>> {
        self.keys.get(&id)
    }
}

/// Random bytes from the system's generator.
pub fn random<const N: usize>() -> io::Result<[u8; N]> {
    let mut out = [0u8; N];
    SystemRandom::new()
        .fill(&mut out)
        .map_err(|_| io::Error::other("the system random generator failed"))?;
    Ok(out)
}

/// Whether `bytes` begin as a sealed body does.
pub fn is_sealed(bytes: &[u8]) -> bool {
    bytes.starts_with(&MAGIC)
}

/// The data key id a sealed body's header names (`None`: not sealed).
pub fn key_id(bytes: &[u8]) -> Option<Result<u32, SealError>> {
    is_sealed(bytes).then(|| Header::parse(bytes).map(|h| h.key_id))
}

/// A parsed header.
struct Header {
    bytes: [u8; HEADER_LEN],
    key_id: u32,
    segment: usize,
    prefix: [u8; PREFIX_LEN],
}

impl Header {
    fn new(key_id: u32) -> io::Result<Header> {
        let prefix: [u8; PREFIX_LEN] = random()?;
        let mut bytes = [0u8; HEADER_LEN];
        bytes[..8].copy_from_slice(&MAGIC);
        bytes[8] = VERSION;
        bytes[9] = SEGMENT_LOG2;
        bytes[10..14].copy_from_slice(&key_id.to_be_bytes());
        bytes[14..].copy_from_slice(&prefix);
        Ok(Header {
            bytes,
            key_id,
            segment: 1 << SEGMENT_LOG2,
            prefix,
        })
    }

    fn parse(b: &[u8]) -> Result<Header, SealError> {
        let bad = |e: String| Err(SealError::Header(e));
        if b.len() < HEADER_LEN {
            return bad(format!("{} bytes, shorter than the header", b.len()));
        }
        if b[..8] != MAGIC {
            return bad("it does not start with the magic \\0EMLAENC".into());
        }
        if b[8] != VERSION {
            return bad(format!(
                "format version {}, this emla reads {VERSION}",
                b[8]
            ));
        }
        if !(10..=24).contains(&b[9]) {
            return bad(format!("segment size 2^{} is out of range", b[9]));
        }
        let mut bytes = [0u8; HEADER_LEN];
        bytes.copy_from_slice(&b[..HEADER_LEN]);
        let mut prefix = [0u8; PREFIX_LEN];
        prefix.copy_from_slice(&b[14..HEADER_LEN]);
        Ok(Header {
            key_id: u32::from_be_bytes([b[10], b[11], b[12], b[13]]),
            segment: 1 << b[9],
            prefix,
            bytes,
        })
    }

    fn nonce(&self, counter: u32, last: bool) -> Nonce {
        let mut n = [0u8; NONCE_LEN];
        n[..PREFIX_LEN].copy_from_slice(&self.prefix);
        n[PREFIX_LEN..11].copy_from_slice(&counter.to_be_bytes());
        n[11] = u8::from(last);
        Nonce::assume_unique_for_key(n)
    }
}

/// Seals what is written to it into `inner`; [`SealWriter::finish`] seals
/// the last segment. Dropped unfinished, it leaves a body that does not
/// open (truncated).
pub struct SealWriter<W: Write> {
    inner: W,
    key: Arc<DataKey>,
    header: Header,
    counter: u32,
    buf: Vec<u8>,
}

impl<W: Write> SealWriter<W> {
    /// Writes the header to `inner`; the body follows as it is written.
    pub fn new(mut inner: W, key: Arc<DataKey>) -> io::Result<SealWriter<W>> {
        let header = Header::new(key.id)?;
        inner.write_all(&header.bytes)?;
        let buf = Vec::with_capacity(header.segment + TAG_LEN);
        Ok(SealWriter {
            inner,
            key,
            header,
            counter: 0,
            buf,
        })
    }

    fn seal_segment(&mut self, last: bool) -> io::Result<()> {
        let nonce = self.header.nonce(self.counter, last);
        self.key
            .key
            .seal_in_place_append_tag(nonce, Aad::from(&self.header.bytes), &mut self.buf)
            .map_err(|_| io::Error::other("AES-GCM sealing failed"))?;
        self.inner.write_all(&self.buf)?;
        self.buf.clear();
        self.counter = self.counter.checked_add(1).ok_or(SealError::TooLarge)?;
        Ok(())
    }

    /// Seals the last segment and flushes; returns the inner writer.
    pub fn finish(mut self) -> io::Result<W> {
        self.seal_segment(true)?;
        self.inner.flush()?;
        Ok(self.inner)
    }
}

impl<W: Write> Write for SealWriter<W> {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        let mut rest = data;
        while !rest.is_empty() {
            // A full segment is sealed only once more follows: the last one
            // may be full too.
            if self.buf.len() == self.header.segment {
                self.seal_segment(false)?;
            }
            let n = rest.len().min(self.header.segment - self.buf.len());
            self.buf.extend_from_slice(&rest[..n]);
            rest = &rest[n..];
        }
        Ok(data.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// Opens a sealed body read from `inner`, a segment at a time; a read
/// fails (`InvalidData`, carrying a [`SealError`]) at the first segment
/// that does not authenticate, so nothing unauthenticated is returned.
pub struct OpenReader<R: Read> {
    inner: R,
    key: Arc<DataKey>,
    header: Header,
    counter: u32,
    /// Ciphertext read, then the plaintext of the current segment.
    buf: Vec<u8>,
    pos: usize,
    /// The first byte of the next segment, read to know this one is not
    /// the last.
    carry: Option<u8>,
    done: bool,
}

impl<R: Read> OpenReader<R> {
    /// Reads the header from `inner` and takes the key it names from `keys`.
    pub fn new(mut inner: R, keys: &Keyring) -> Result<OpenReader<R>, SealError> {
        let mut head = [0u8; HEADER_LEN];
        let mut n = 0;
        while n < HEADER_LEN {
            match inner.read(&mut head[n..]) {
                Ok(0) => break,
                Ok(k) => n += k,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(SealError::Io(e)),
            }
        }
        let header = Header::parse(&head[..n])?;
        let key = keys
            .get(header.key_id)
            .ok_or(SealError::UnknownKey(header.key_id))?
            .clone();
        Ok(OpenReader {
            inner,
            key,
            buf: Vec::with_capacity(header.segment + TAG_LEN + 1),
            header,
            counter: 0,
            pos: 0,
            carry: None,
            done: false,
        })
    }

    /// Reads and opens the next segment into `buf`.
    fn next_segment(&mut self) -> Result<(), SealError> {
        let want = self.header.segment + TAG_LEN + 1;
        self.buf.clear();
        self.buf.extend(self.carry.take());
        let mut filled = self.buf.len();
        self.buf.resize(want, 0);
        while filled < want {
            match self.inner.read(&mut self.buf[filled..]) {
                Ok(0) => break,
                Ok(k) => filled += k,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(SealError::Io(e)),
            }
        }
        self.buf.truncate(filled);
        let last = filled < want;
        if !last {
            self.carry = self.buf.pop();
        }
        let segment = self.counter;
        if self.buf.len() < TAG_LEN {
            return Err(SealError::Truncated { segment });
        }
        // ring zeroes a buffer that does not open: keep a full last
        // segment's ciphertext to tell a cut body from an altered one.
        let spare =
            (last && self.buf.len() == self.header.segment + TAG_LEN).then(|| self.buf.clone());
        let aad = self.header.bytes;
        let opened = self
            .key
            .key
            .open_in_place(
                self.header.nonce(segment, last),
                Aad::from(&aad),
                &mut self.buf,
            )
            .map(|p| p.len());
        match opened {
            Ok(len) => self.buf.truncate(len),
            Err(_) => return Err(self.diagnose(segment, spare)),
        }
        self.pos = 0;
        self.done = last;
        self.counter = self.counter.checked_add(1).ok_or(SealError::TooLarge)?;
        Ok(())
    }

    /// Why segment `segment` did not open: a full one read last that opens
    /// as a middle one means the rest was cut off.
    fn diagnose(&self, segment: u32, spare: Option<Vec<u8>>) -> SealError {
        if let Some(mut ct) = spare {
            let nonce = self.header.nonce(segment, false);
            let aad = Aad::from(&self.header.bytes);
            if self.key.key.open_in_place(nonce, aad, &mut ct).is_ok() {
                return SealError::Truncated {
                    segment: segment.saturating_add(1),
                };
            }
        }
        SealError::Tampered { segment }
    }
}

impl<R: Read> Read for OpenReader<R> {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        while self.pos == self.buf.len() {
            if self.done || out.is_empty() {
                return Ok(0);
            }
            self.next_segment()?;
        }
        let n = out.len().min(self.buf.len() - self.pos);
        out[..n].copy_from_slice(&self.buf[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
}

/// `plain` sealed under `key`, in one piece.
pub fn seal_to_vec(key: &Arc<DataKey>, plain: &[u8]) -> io::Result<Vec<u8>> {
    let segments = plain.len().div_ceil(1 << SEGMENT_LOG2).max(1);
    let out = Vec::with_capacity(HEADER_LEN + plain.len() + segments * TAG_LEN);
    let mut w = SealWriter::new(out, key.clone())?;
    w.write_all(plain)?;
    w.finish()
}

/// The plaintext of the sealed body `sealed`, in one piece.
pub fn open_to_vec(sealed: &[u8], keys: &Keyring) -> Result<Vec<u8>, SealError> {
    let mut r = OpenReader::new(sealed, keys)?;
    let mut out = Vec::with_capacity(sealed.len());
    r.read_to_end(&mut out).map_err(SealError::from_io)?;
    Ok(out)
}

/// Associated data of a wrapped data key: it cannot be moved to another id.
fn wrap_aad(id: u32) -> [u8; 17] {
    let mut aad = [0u8; 17];
    aad[..13].copy_from_slice(b"emla data key");
    aad[13..].copy_from_slice(&id.to_be_bytes());
    aad
}

/// The key-encryption key.
pub struct Kek(LessSafeKey);

impl Kek {
    /// The KEK `bytes`.
    pub fn new(bytes: &[u8; KEY_LEN]) -> Kek {
        Kek(aes_key(bytes))
    }

    /// Data key `key`, named `id`, wrapped: nonce (12) | AES-256-GCM | tag.
    pub fn wrap_key(&self, id: u32, key: &[u8; KEY_LEN]) -> io::Result<Vec<u8>> {
        let nonce: [u8; NONCE_LEN] = random()?;
        let mut out = key.to_vec();
        self.0
            .seal_in_place_append_tag(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(wrap_aad(id)),
                &mut out,
            )
            .map_err(|_| io::Error::other("AES-GCM sealing failed"))?;
        let mut wrapped = nonce.to_vec();
        wrapped.extend_from_slice(&out);
        Ok(wrapped)
    }

    /// Data key `id` from its wrapped form (`None`: this KEK did not wrap
    /// it, or the bytes were altered).
    pub fn unwrap_key(&self, id: u32, wrapped: &[u8]) -> Option<DataKey> {
        self.unwrap_bytes(id, wrapped)
            .map(|bytes| DataKey::new(id, &bytes))
    }

    /// [`Kek::unwrap_key`], the key's bytes (to wrap them under another KEK).
    pub fn unwrap_bytes(&self, id: u32, wrapped: &[u8]) -> Option<[u8; KEY_LEN]> {
        if wrapped.len() != NONCE_LEN + KEY_LEN + TAG_LEN {
            return None;
        }
        let (nonce, sealed) = wrapped.split_at(NONCE_LEN);
        let nonce = Nonce::try_assume_unique_for_key(nonce).ok()?;
        let mut buf = sealed.to_vec();
        let plain = self
            .0
            .open_in_place(nonce, Aad::from(wrap_aad(id)), &mut buf)
            .ok()?;
        plain.try_into().ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SEG: usize = 1 << SEGMENT_LOG2;

    fn keyring(ids: &[u32]) -> Keyring {
        Keyring::new(ids.iter().map(|&id| DataKey::new(id, &[id as u8; 32])))
    }

    fn body(len: usize) -> Vec<u8> {
        (0..len).map(|i| (i * 31 % 251) as u8).collect()
    }

    fn sealed(len: usize) -> (Keyring, Vec<u8>, Vec<u8>) {
        let keys = keyring(&[1, 2]);
        let plain = body(len);
        let out = seal_to_vec(keys.current().unwrap(), &plain).unwrap();
        (keys, plain, out)
    }

    #[test]
    fn round_trips_every_length_around_segment_boundaries() {
        for len in [0, 1, 100, SEG - 1, SEG, SEG + 1, 2 * SEG, 3 * SEG + 7] {
            let (keys, plain, out) = sealed(len);
            assert!(is_sealed(&out));
            assert_eq!(key_id(&out).unwrap().unwrap(), 2);
            let segments = len.div_ceil(SEG).max(1);
            assert_eq!(out.len(), HEADER_LEN + len + segments * TAG_LEN, "{len}");
            assert_eq!(open_to_vec(&out, &keys).unwrap(), plain, "{len}");
            // Read in small, odd steps as a stream.
            let mut r = OpenReader::new(&out[..], &keys).unwrap();
            let mut got = Vec::new();
            let mut step = [0u8; 1000];
            loop {
                let n = r.read(&mut step[..777]).unwrap();
                if n == 0 {
                    break;
                }
                got.extend_from_slice(&step[..n]);
            }
            assert_eq!(got, plain, "{len}");
        }
    }

    #[test]
    fn writes_in_any_steps_give_a_body_that_opens() {
        let keys = keyring(&[7]);
        let plain = body(3 * SEG + 5);
        let mut w = SealWriter::new(Vec::new(), keys.current().unwrap().clone()).unwrap();
        for chunk in plain.chunks(4093) {
            w.write_all(chunk).unwrap();
        }
        let out = w.finish().unwrap();
        assert_eq!(open_to_vec(&out, &keys).unwrap(), plain);
    }

    #[test]
    fn the_same_body_seals_differently_each_time() {
        let keys = keyring(&[1]);
        let k = keys.current().unwrap();
        assert_ne!(
            seal_to_vec(k, b"same").unwrap(),
            seal_to_vec(k, b"same").unwrap()
        );
    }

    #[test]
    fn truncation_is_detected_at_a_boundary_and_inside_a_segment() {
        let (keys, _, out) = sealed(2 * SEG + 10);
        // Cut after the first two (full) segments: the last is missing.
        let cut = HEADER_LEN + 2 * (SEG + TAG_LEN);
        let e = open_to_vec(&out[..cut], &keys).unwrap_err();
        assert!(matches!(e, SealError::Truncated { segment: 2 }), "{e}");
        let cut = HEADER_LEN + SEG + TAG_LEN;
        let e = open_to_vec(&out[..cut], &keys).unwrap_err();
        assert!(matches!(e, SealError::Truncated { segment: 1 }), "{e}");
        // Inside the last segment, and inside the header.
        let e = open_to_vec(&out[..out.len() - 3], &keys).unwrap_err();
        assert!(matches!(e, SealError::Tampered { segment: 2 }), "{e}");
        let e = open_to_vec(&out[..HEADER_LEN - 1], &keys).unwrap_err();
        assert!(matches!(e, SealError::Header(_)), "{e}");
        // Nothing after the header.
        let e = open_to_vec(&out[..HEADER_LEN], &keys).unwrap_err();
        assert!(matches!(e, SealError::Truncated { segment: 0 }), "{e}");
        // Bytes appended.
        let mut longer = out.clone();
        longer.push(0);
        assert!(open_to_vec(&longer, &keys).is_err());
    }

    #[test]
    fn a_flipped_byte_anywhere_is_detected() {
        let (keys, _, out) = sealed(SEG + 100);
        for at in [
            HEADER_LEN - 1, // nonce prefix
            HEADER_LEN,     // first ciphertext byte
            HEADER_LEN + SEG + TAG_LEN - 1,
            out.len() - 1, // last tag
        ] {
            let mut bad = out.clone();
            bad[at] ^= 0x01;
            let e = open_to_vec(&bad, &keys).unwrap_err();
            assert!(matches!(e, SealError::Tampered { .. }), "{at}: {e}");
        }
        // The header: version, segment size, key id.
        for (at, what) in [(8, "version"), (9, "segment size")] {
            let mut bad = out.clone();
            bad[at] ^= 0x40;
            let e = open_to_vec(&bad, &keys).unwrap_err();
            assert!(
                matches!(e, SealError::Header(ref m) if m.contains(what)),
                "{e}"
            );
        }
        let mut other_key = out.clone();
        other_key[13] = 1; // key id 2 -> 1: a key the keyring holds
        let e = open_to_vec(&other_key, &keys).unwrap_err();
        assert!(matches!(e, SealError::Tampered { segment: 0 }), "{e}");
    }

    #[test]
    fn a_stream_read_stops_before_the_first_bad_segment() {
        let (keys, plain, mut out) = sealed(2 * SEG);
        let second = HEADER_LEN + SEG + TAG_LEN;
        out[second + 5] ^= 0x80;
        let mut r = OpenReader::new(&out[..], &keys).unwrap();
        let mut got = Vec::new();
        let e = r.read_to_end(&mut got).unwrap_err();
        assert_eq!(got, plain[..SEG], "only the authenticated first segment");
        let e = SealError::from_io(e);
        assert!(matches!(e, SealError::Tampered { segment: 1 }), "{e}");
    }

    #[test]
    fn swapped_and_reordered_segments_are_detected() {
        let (keys, _, out) = sealed(3 * SEG);
        let seg = |n: usize| {
            let s = HEADER_LEN + n * (SEG + TAG_LEN);
            out[s..s + SEG + TAG_LEN].to_vec()
        };
        let mut swapped = out[..HEADER_LEN].to_vec();
        for n in [1, 0, 2] {
            swapped.extend(seg(n));
        }
        swapped.extend_from_slice(&out[HEADER_LEN + 3 * (SEG + TAG_LEN)..]);
        let e = open_to_vec(&swapped, &keys).unwrap_err();
        assert!(matches!(e, SealError::Tampered { segment: 0 }), "{e}");
        // A segment of another body sealed under the same key.
        let other = seal_to_vec(keys.current().unwrap(), &body(3 * SEG)).unwrap();
        let mut spliced = out.clone();
        let s = HEADER_LEN + SEG + TAG_LEN;
        spliced[s..s + SEG + TAG_LEN].copy_from_slice(&other[s..s + SEG + TAG_LEN]);
        let e = open_to_vec(&spliced, &keys).unwrap_err();
        assert!(matches!(e, SealError::Tampered { segment: 1 }), "{e}");
    }

    #[test]
    fn a_wrong_or_unknown_key_is_named() {
        let (_, _, out) = sealed(10);
        let wrong = Keyring::new([DataKey::new(2, &[9; 32])]);
        let e = open_to_vec(&out, &wrong).unwrap_err();
        assert!(matches!(e, SealError::Tampered { segment: 0 }), "{e}");
        let e = open_to_vec(&out, &keyring(&[1])).unwrap_err();
        assert!(matches!(e, SealError::UnknownKey(2)), "{e}");
        assert!(e.to_string().contains("data key 2"), "{e}");
        let e = open_to_vec(b"Subject: plain\r\n\r\n", &keyring(&[1])).unwrap_err();
        assert!(matches!(e, SealError::Header(_)), "{e}");
        assert!(key_id(b"Subject: plain\r\n\r\n").is_none());
    }

    #[test]
    fn data_keys_unwrap_only_with_their_kek_and_id() {
        let kek = Kek::new(&[5; 32]);
        let wrapped = kek.wrap_key(3, &[8; 32]).unwrap();
        assert_eq!(wrapped.len(), 60);
        let k = kek.unwrap_key(3, &wrapped).unwrap();
        assert_eq!(k.id(), 3);
        let keys = Keyring::new([k]);
        let check = Keyring::new([DataKey::new(3, &[8; 32])]);
        let sealed = seal_to_vec(keys.current().unwrap(), b"x").unwrap();
        assert_eq!(open_to_vec(&sealed, &check).unwrap(), b"x");
        assert!(Kek::new(&[6; 32]).unwrap_key(3, &wrapped).is_none());
        assert!(kek.unwrap_key(4, &wrapped).is_none(), "moved to another id");
        let mut bad = wrapped.clone();
        bad[20] ^= 1;
        assert!(kek.unwrap_key(3, &bad).is_none());
        assert!(kek.unwrap_key(3, &wrapped[1..]).is_none());
    }
}
