//! A node's placement tags: the automatic `arch:` tag of the build plus the configured
//! `server_tags`, normalised as nats-server normalises them (trimmed, lower-cased, no empties, no
//! duplicates), and the case-insensitive comparison placement uses.

/// The prefix of the automatic architecture tag every node carries.
pub const ARCH_TAG_PREFIX: &str = "arch:";

/// nats-server's `jsExcludePlacement`: a node carrying this tag never receives stream replicas.
pub const EXCLUDE_PLACEMENT_TAG: &str = "!jetstream";

/// The automatic tag for a Rust target architecture (`std::env::consts::ARCH`). 32-bit `arm`
/// builds are the armv7 nodes, so they are tagged `arch:armv7`; every other value is used as is.
pub fn arch_tag_for(rust_arch: &str) -> String {
    let arch = match rust_arch {
        "arm" => "armv7",
        other => other,
    };
    normalize_tag(&format!("{ARCH_TAG_PREFIX}{arch}"))
}

/// The tags this node advertises: the automatic arch tag of this build plus `configured`
/// (`server_tags`), normalised and sorted.
pub fn node_tags(configured: &[String]) -> Vec<String> {
    node_tags_for_arch(std::env::consts::ARCH, configured)
}

/// [`node_tags`] for a given architecture (what a node of that architecture would advertise).
///
/// nats-server trims, lower-cases and de-duplicates `server_tags` (checked against 2.9.10 and
/// 2.15.1: `[" Spaced ", "DUP", "dup"]` is reported as `["spaced", "dup"]`); it keeps the
/// configured order, natrix sorts so that the list is the same whatever the order in the file.
pub fn node_tags_for_arch(rust_arch: &str, configured: &[String]) -> Vec<String> {
    let mut tags: Vec<String> = configured
        .iter()
        .map(|t| normalize_tag(t))
        .filter(|t| !t.is_empty())
        .collect();
    tags.push(arch_tag_for(rust_arch));
    tags.sort();
    tags.dedup();
    tags
}

/// One tag as nats-server stores it: surrounding whitespace removed, lower case.
pub fn normalize_tag(tag: &str) -> String {
    tag.trim().to_lowercase()
}

/// Whether `tags` holds `wanted`, ignoring case (nats-server matches placement tags with
/// `EqualFold`: a stream asking for `AZ:z1` is placed on a node tagged `az:z1`).
pub fn has_tag(tags: &[String], wanted: &str) -> bool {
    let wanted = wanted.to_lowercase();
    tags.iter().any(|t| t.to_lowercase() == wanted)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strings(items: &[&str]) -> Vec<String> {
        items.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn arch_tags_name_the_three_supported_architectures() {
        assert_eq!(arch_tag_for("x86_64"), "arch:x86_64");
        assert_eq!(arch_tag_for("aarch64"), "arch:aarch64");
        assert_eq!(arch_tag_for("arm"), "arch:armv7");
        assert_eq!(arch_tag_for("riscv64"), "arch:riscv64");
    }

    #[test]
    fn node_tags_are_trimmed_lowercased_deduplicated_and_sorted() {
        let tags = node_tags_for_arch("x86_64", &strings(&[" Spaced ", "DUP", "dup", "", "  "]));
        assert_eq!(tags, strings(&["arch:x86_64", "dup", "spaced"]));
    }

    #[test]
    fn a_configured_arch_tag_equal_to_the_automatic_one_appears_once() {
        let tags = node_tags_for_arch("arm", &strings(&["ARCH:ARMv7", "az:1"]));
        assert_eq!(tags, strings(&["arch:armv7", "az:1"]));
    }

    #[test]
    fn this_build_always_carries_its_arch_tag() {
        let tags = node_tags(&[]);
        assert_eq!(tags, vec![arch_tag_for(std::env::consts::ARCH)]);
    }

    #[test]
    fn tag_lookup_ignores_case() {
        let tags = strings(&["az:z1", "ssd"]);
        assert!(has_tag(&tags, "AZ:Z1"));
        assert!(has_tag(&tags, "ssd"));
        assert!(!has_tag(&tags, "az:z2"));
    }
}
