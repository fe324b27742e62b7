//! The dashboard's pages (web-ui/), embedded in the binary: URL path,
//! content type, bytes.

pub const ASSETS: &[(&str, &str, &[u8])] = &[];
