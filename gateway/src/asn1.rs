//! Minimal ASN.1 TLV walking, and BER → DER normalisation.
//!
//! Mail clients (OpenSSL's `smime -sign` among them) emit CMS in BER with
//! indefinite lengths and chunked OCTET STRINGs, which the `der` crate
//! refuses. We normalise to DER before decoding, and walk TLVs ourselves
//! where the original bytes matter (signed attributes, certificates) because
//! decoding a SET OF re-sorts it. Shared by CMS ([`crate::smime`]) and
//! certificate and OCSP parsing ([`crate::trust`]).

use std::fmt;

/// Deepest BER nesting accepted; real CMS stays far below it.
const MAX_NESTING: usize = 64;

/// Why an ASN.1 encoding was refused.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Asn1Error(pub &'static str);

impl fmt::Display for Asn1Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.0)
    }
}

/// One DER TLV within its input.
#[derive(Clone, Copy, Debug)]
pub struct Tlv<'a> {
    /// The identifier octet (single-octet tags only: all CMS needs).
    pub tag: u8,
    /// The value octets.
    pub value: &'a [u8],
    /// The whole encoding, header included.
    pub raw: &'a [u8],
}

/// Reads consecutive DER TLVs from a byte slice.
pub struct Reader<'a> {
    input: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    /// A reader over `input`.
    pub fn new(input: &'a [u8]) -> Self {
        Reader { input, pos: 0 }
    }

    /// Whether all input was consumed.
    pub fn is_empty(&self) -> bool {
        self.pos >= self.input.len()
    }

    /// The tag of the next TLV, if any.
    pub fn peek_tag(&self) -> Option<u8> {
        self.input.get(self.pos).copied()
    }

    /// Reads the next definite-length TLV.
    pub fn read(&mut self) -> Result<Tlv<'a>, Asn1Error> {
        let start = self.pos;
        let (tag, len, hdr) = header(&self.input[start..])?;
        let len = len.ok_or(Asn1Error("indefinite length in DER"))?;
        let end = start
            .checked_add(hdr)
            .and_then(|v| v.checked_add(len))
            .filter(|&e| e <= self.input.len())
            .ok_or(Asn1Error("ASN.1 length runs past the end of the data"))?;
        self.pos = end;
        Ok(Tlv {
            tag,
            value: &self.input[start + hdr..end],
            raw: &self.input[start..end],
        })
    }

    /// Reads the next TLV and checks its tag.
    pub fn expect(&mut self, tag: u8, what: &'static str) -> Result<Tlv<'a>, Asn1Error> {
        let tlv = self.read()?;
        if tlv.tag != tag {
            return Err(Asn1Error(what));
        }
        Ok(tlv)
    }
}

/// Parses a TLV header: (tag, length or None when indefinite, header size).
fn header(input: &[u8]) -> Result<(u8, Option<usize>, usize), Asn1Error> {
    let tag = *input.first().ok_or(Asn1Error("truncated ASN.1 tag"))?;
    if tag & 0x1f == 0x1f {
        return Err(Asn1Error("multi-octet ASN.1 tags are not used by CMS"));
    }
    let first = *input.get(1).ok_or(Asn1Error("truncated ASN.1 length"))?;
    match first {
        0x80 => Ok((tag, None, 2)),
        n if n < 0x80 => Ok((tag, Some(n as usize), 2)),
        n => {
            let count = (n & 0x7f) as usize;
            if count > 4 {
                return Err(Asn1Error("ASN.1 length does not fit 32 bits"));
            }
            let bytes = input
                .get(2..2 + count)
                .ok_or(Asn1Error("truncated ASN.1 length"))?;
            let len = bytes.iter().fold(0usize, |acc, &b| (acc << 8) | b as usize);
            Ok((tag, Some(len), 2 + count))
        }
    }
}

/// Whether `input` (one TLV) needs [`to_der`]: it uses an indefinite length.
/// A quick scan of the structural headers only, stopping at primitive values.
pub fn needs_normalising(input: &[u8]) -> bool {
    fn scan(mut input: &[u8], depth: usize) -> bool {
        while !input.is_empty() {
            let Ok((tag, len, hdr)) = header(input) else {
                return false; // the strict decoder will report it
            };
            let Some(len) = len else { return true };
            let Some(value) = input.get(hdr..hdr + len) else {
                return false;
            };
            if tag & 0x20 != 0 && depth < MAX_NESTING && scan(value, depth + 1) {
                return true;
            }
            input = &input[hdr + len..];
        }
        false
    }
    scan(input, 0)
}

/// Re-encodes one BER TLV as DER: definite minimal lengths, and constructed
/// string types (OCTET STRING, BIT STRING...) flattened into primitive ones.
/// Other content is copied unchanged (SETs are not re-sorted).
pub fn to_der(input: &[u8]) -> Result<Vec<u8>, Asn1Error> {
    let mut out = Vec::with_capacity(input.len());
    let used = normalise(input, &mut out, 0)?;
    if used != input.len() {
        return Err(Asn1Error("trailing data after the CMS object"));
    }
    Ok(out)
}

/// Normalises the TLV at the start of `input` into `out`; returns the number
/// of input bytes consumed.
fn normalise(input: &[u8], out: &mut Vec<u8>, depth: usize) -> Result<usize, Asn1Error> {
    if depth > MAX_NESTING {
        return Err(Asn1Error("ASN.1 nested too deeply"));
    }
    let (tag, len, hdr) = header(input)?;
    let constructed = tag & 0x20 != 0;
    if !constructed {
        let len = len.ok_or(Asn1Error("indefinite length on a primitive ASN.1 value"))?;
        let value = input
            .get(hdr..hdr + len)
            .ok_or(Asn1Error("ASN.1 length runs past the end of the data"))?;
        write_tlv(out, tag, value);
        return Ok(hdr + len);
    }
    // Universal string types (3 BIT STRING, 4 OCTET STRING, 12.. text
    // strings) may be chunked in BER; DER wants them primitive.
    let flatten = tag & 0xc0 == 0 && matches!(tag & 0x1f, 3 | 4 | 12 | 19 | 20 | 22 | 26 | 30);
    let mut children = Vec::new();
    let mut pos = hdr;
    let consumed = loop {
        match len {
            Some(l) if pos == hdr + l => break pos,
            Some(l) if pos > hdr + l => return Err(Asn1Error("ASN.1 child overruns its parent")),
            None if input.get(pos..pos + 2) == Some(&[0, 0]) => break pos + 2,
            _ if pos >= input.len() => {
                return Err(Asn1Error("ASN.1 value runs past the end of the data"))
            }
            _ => {}
        }
        let mut child = Vec::new();
        pos += normalise(&input[pos..], &mut child, depth + 1)?;
        if flatten {
            let (_, clen, chdr) = header(&child)?;
            children.extend_from_slice(&child[chdr..chdr + clen.unwrap_or(0)]);
        } else {
            children.extend_from_slice(&child);
        }
    };
    let out_tag = if flatten { tag & !0x20 } else { tag };
    write_tlv(out, out_tag, &children);
    Ok(consumed)
}

/// Appends a DER TLV with a minimal length.
pub fn write_tlv(out: &mut Vec<u8>, tag: u8, value: &[u8]) {
    out.push(tag);
    let len = value.len();
    if len < 0x80 {
        out.push(len as u8);
    } else {
        let bytes = len.to_be_bytes();
        let skip = bytes.iter().take_while(|&&b| b == 0).count();
        out.push(0x80 | (bytes.len() - skip) as u8);
        out.extend_from_slice(&bytes[skip..]);
    }
    out.extend_from_slice(value);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_definite_tlvs() {
        let data = [0x30, 0x03, 0x02, 0x01, 0x05, 0x04, 0x00];
        let mut r = Reader::new(&data);
        let seq = r.read().unwrap();
        assert_eq!(seq.tag, 0x30);
        assert_eq!(seq.value, &[0x02, 0x01, 0x05]);
        let os = r.expect(0x04, "octet string").unwrap();
        assert_eq!(os.raw, &[0x04, 0x00]);
        assert!(r.is_empty());
    }

    #[test]
    fn rejects_overlong_length() {
        let data = [0x04, 0x05, 0x01];
        assert!(Reader::new(&data).read().is_err());
    }

    #[test]
    fn normalises_indefinite_and_chunked() {
        // SEQUENCE (indefinite) { OCTET STRING constructed (indefinite) { "ab", "c" } }
        let ber = [
            0x30, 0x80, 0x24, 0x80, 0x04, 0x02, b'a', b'b', 0x04, 0x01, b'c', 0x00, 0x00, 0x00,
            0x00,
        ];
        assert!(needs_normalising(&ber));
        let der = to_der(&ber).unwrap();
        assert_eq!(der, [0x30, 0x05, 0x04, 0x03, b'a', b'b', b'c']);
        assert!(!needs_normalising(&der));
    }

    #[test]
    fn long_lengths_are_minimal() {
        let value = vec![7u8; 300];
        let mut out = Vec::new();
        write_tlv(&mut out, 0x04, &value);
        assert_eq!(&out[..4], &[0x04, 0x82, 0x01, 0x2c]);
    }

    #[test]
    fn refuses_runaway_nesting() {
        let mut ber = Vec::new();
        for _ in 0..100 {
            ber.extend_from_slice(&[0x30, 0x80]);
        }
        assert!(to_der(&ber).is_err());
    }
}
