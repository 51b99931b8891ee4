//! The routes' prefixes as a tree of path segments: a request's route is found by walking its
//! path's segments down the tree, a few map lookups however many routes there are (a scan of
//! 10,000 routes cost every request ~10,000 comparisons; bench/RESULTS.md, "Scale").

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};

/// One segment of a prefix: the route whose prefix ends here, and the segments that follow.
#[derive(Debug, Default)]
pub(super) struct PrefixTree {
    /// Index (into the route table) of the route whose prefix ends at this node.
    route: Option<usize>,
    children: HashMap<Box<[u8]>, PrefixTree, BuildHasherDefault<SegmentHasher>>,
}

impl PrefixTree {
    /// Adds the route at `index`, whose prefix has `segments`; a prefix already taken keeps the
    /// route it had (the first configured, as a scan in configuration order would pick).
    pub(super) fn insert<'a>(&mut self, segments: impl Iterator<Item = &'a [u8]>, index: usize) {
        let mut node = self;
        for segment in segments {
            node = node.children.entry(segment.into()).or_default();
        }
        node.route.get_or_insert(index);
    }

    /// The route with the longest prefix covering `segments` (a path's, `;parameters` already
    /// cut off each), if any.
    pub(super) fn longest<'a>(&self, segments: impl Iterator<Item = &'a [u8]>) -> Option<usize> {
        let mut node = self;
        let mut found = node.route;
        for segment in segments {
            match node.children.get(segment) {
                Some(child) => {
                    node = child;
                    found = child.route.or(found);
                }
                None => break,
            }
        }
        found
    }
}

/// FNV-1a, for segments: short keys hashed in a few instructions. Not keyed, which is safe here:
/// the tree's keys come from the config, so a client choosing the segments it sends can make a
/// lookup miss but cannot crowd the keys into one bucket.
struct SegmentHasher(u64);

impl Default for SegmentHasher {
    fn default() -> SegmentHasher {
        SegmentHasher(0xcbf2_9ce4_8422_2325)
    }
}

impl Hasher for SegmentHasher {
    fn write(&mut self, bytes: &[u8]) {
        for &byte in bytes {
            self.0 = (self.0 ^ u64::from(byte)).wrapping_mul(0x0100_0000_01b3);
        }
    }

    fn finish(&self) -> u64 {
        self.0
    }
}
