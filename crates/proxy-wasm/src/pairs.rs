//! proxy-wasm's "pairs" encoding, decoded: how the host hands over header
//! maps, and how Envoy returns list values of properties (jwt_authn's claims).
//! Pure code, tested natively; never trusts a size it reads.

use mcpgw_core::gateway::host::MetaValue;

/// The entries of a pairs buffer: a little-endian count, then a (key size,
/// value size) per entry, then each key and value followed by a NUL. `None`
/// unless the bytes are exactly such a buffer.
pub fn decode_pairs(b: &[u8]) -> Option<Vec<(&[u8], &[u8])>> {
    let word = |i: usize| -> Option<usize> {
        let w: [u8; 4] = b.get(i..i.checked_add(4)?)?.try_into().ok()?;
        usize::try_from(u32::from_le_bytes(w)).ok()
    };
    let count = word(0)?;
    // Each entry takes at least 10 bytes: no allocation beyond the input's size.
    if count > b.len() / 10 {
        return None;
    }
    let mut pos = count.checked_mul(8)?.checked_add(4)?;
    let mut out = Vec::with_capacity(count);
    for i in 0..count {
        let k = word(4 + i * 8)?;
        let v = word(8 + i * 8)?;
        let key = b.get(pos..pos.checked_add(k)?)?;
        pos += k;
        if b.get(pos) != Some(&0) {
            return None;
        }
        pos += 1;
        let value = b.get(pos..pos.checked_add(v)?)?;
        pos += v;
        if b.get(pos) != Some(&0) {
            return None;
        }
        pos += 1;
        out.push((key, value));
    }
    (pos == b.len()).then_some(out)
}

/// A header map from a pairs buffer, as text. Bytes that are not UTF-8
/// (obs-text, legal in HTTP/1.1 values) become U+FFFD: such a value can never
/// match a session id, token or media type, and it is never written back.
pub fn decode_header_pairs(b: &[u8]) -> Vec<(String, String)> {
    decode_pairs(b)
        .unwrap_or_default()
        .into_iter()
        .map(|(k, v)| {
            (
                String::from_utf8_lossy(k).into_owned(),
                String::from_utf8_lossy(v).into_owned(),
            )
        })
        .collect()
}

/// A metadata value as Envoy returns it through `get_property`: a list as a
/// pairs buffer of its items (the keys), a string as its bytes. Numbers and
/// booleans come back as opaque bytes that cannot be told from a string, so
/// only UTF-8 without NULs counts as one; anything else is not typed (`None`).
pub fn meta_value(bytes: Vec<u8>) -> Option<MetaValue> {
    if let Some(items) = decode_pairs(&bytes).filter(|p| !p.is_empty() && p.len() <= 4096) {
        return items
            .into_iter()
            .map(|(k, _)| String::from_utf8(k.to_vec()).ok().map(MetaValue::Str))
            .collect::<Option<Vec<_>>>()
            .map(MetaValue::List);
    }
    match String::from_utf8(bytes) {
        Ok(s) if !s.contains('\0') => Some(MetaValue::Str(s)),
        _ => None,
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests {
    use super::*;
    use mcpgw_core::gateway::host::header;

    fn encode(pairs: &[(&[u8], &[u8])]) -> Vec<u8> {
        let mut b = u32::try_from(pairs.len()).unwrap().to_le_bytes().to_vec();
        for (k, v) in pairs {
            b.extend(u32::try_from(k.len()).unwrap().to_le_bytes());
            b.extend(u32::try_from(v.len()).unwrap().to_le_bytes());
        }
        for (k, v) in pairs {
            b.extend(*k);
            b.push(0);
            b.extend(*v);
            b.push(0);
        }
        b
    }

    #[test]
    fn pairs_round_trip_and_reject_bad_sizes() {
        let pairs: &[(&[u8], &[u8])] =
            &[(b":status", b"200"), (b"x-note", b"caf\xe9"), (b"e", b"")];
        let b = encode(pairs);
        assert_eq!(decode_pairs(&b).unwrap(), pairs.to_vec());
        assert_eq!(
            decode_pairs(&encode(&[])).unwrap(),
            Vec::<(&[u8], &[u8])>::new()
        );
        for cut in 0..b.len() {
            assert_eq!(decode_pairs(&b[..cut]), None, "cut at {cut}");
        }
        let mut huge = b.clone();
        huge[0..4].copy_from_slice(&u32::MAX.to_le_bytes());
        assert_eq!(decode_pairs(&huge), None);
        let mut long = b.clone();
        long[4..8].copy_from_slice(&u32::MAX.to_le_bytes());
        assert_eq!(decode_pairs(&long), None);
        let mut extra = b;
        extra.push(0);
        assert_eq!(decode_pairs(&extra), None);
    }

    #[test]
    fn header_values_that_are_not_utf8_become_replacement_characters() {
        let b = encode(&[(b"x-note", b"caf\xe9"), (b"mcp-session-id", b"abc")]);
        let h = decode_header_pairs(&b);
        assert_eq!(header(&h, "x-note"), Some("caf\u{fffd}"));
        assert_eq!(header(&h, "mcp-session-id"), Some("abc"));
        assert!(decode_header_pairs(b"junk").is_empty());
    }

    #[test]
    fn metadata_values_decode_envoy_encoding() {
        // As Envoy 1.40 returned them for a verified token (observed).
        let groups: &[u8] = &[
            2, 0, 0, 0, 3, 0, 0, 0, 0, 0, 0, 0, 6, 0, 0, 0, 0, 0, 0, 0, b'o', b'p', b's', 0, 0,
            b'a', b'd', b'm', b'i', b'n', b's', 0, 0,
        ];
        assert_eq!(
            meta_value(groups.to_vec()),
            Some(MetaValue::List(vec![
                MetaValue::Str("ops".into()),
                MetaValue::Str("admins".into())
            ]))
        );
        assert_eq!(
            meta_value(b"https://mcp.test/mcp".to_vec()),
            Some(MetaValue::Str("https://mcp.test/mcp".into()))
        );
        assert_eq!(
            meta_value(groups[..groups.len() - 1].to_vec()),
            None,
            "a cut list is neither a list nor text"
        );
        // `exp`, a number: opaque bytes, skipped.
        assert_eq!(meta_value(vec![0, 0, 0, 12, 123, 192, 218, 65]), None);
    }
}
