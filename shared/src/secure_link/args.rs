//! Query-argument lookup as nginx's `ngx_http_arg` does it.

/// The raw value of the first argument named `name` in `args`.
///
/// nginx matches names case-insensitively, only at the start of the query or right after `&`,
/// and only when followed by `=`; names are not percent-decoded (`md%35` is not `md5`), values
/// are returned raw, and the first occurrence wins. `;` is not a separator.
pub fn query_arg<'a>(args: &'a [u8], name: &[u8]) -> Option<&'a [u8]> {
    args.split(|&b| b == b'&').find_map(|pair| {
        let rest = pair.get(name.len()..)?;
        (pair[..name.len()].eq_ignore_ascii_case(name) && rest.first() == Some(&b'='))
            .then(|| &rest[1..])
    })
}

#[cfg(test)]
mod tests {
    use super::query_arg;

    #[test]
    fn first_occurrence_wins_case_insensitively() {
        assert_eq!(query_arg(b"md5=a&md5=b", b"md5"), Some(&b"a"[..]));
        assert_eq!(query_arg(b"MD5=a", b"md5"), Some(&b"a"[..]));
        assert_eq!(query_arg(b"xmd5=j&md5=k", b"md5"), Some(&b"k"[..]));
        assert_eq!(query_arg(b"&md5=k", b"md5"), Some(&b"k"[..]));
        assert_eq!(query_arg(b"md5=", b"md5"), Some(&b""[..]));
    }

    #[test]
    fn no_decoding_and_no_semicolons() {
        assert_eq!(query_arg(b"md%35=a", b"md5"), None);
        assert_eq!(query_arg(b"a=1;md5=x", b"md5"), None);
        assert_eq!(query_arg(b"md5", b"md5"), None);
        assert_eq!(query_arg(b"md5=a;expires=1", b"expires"), None);
        assert_eq!(query_arg(b"", b"md5"), None);
    }
}
