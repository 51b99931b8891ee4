//! The routes' prefixes as a tree of path segments: a request's route is found by walking its
//! path's segments down the tree, a few map lookups however many routes there are (a scan of
//! 10,000 routes cost every request ~10,000 comparisons; bench/RESULTS.md, "Scale").

use crate::per_thread::FastMap;

/// One segment of a prefix: the route whose prefix ends here, and the segments that follow.
#[derive(Debug, Default)]
pub(super) struct PrefixTree {
    /// Index (into the route table) of the route whose prefix ends at this node.
    route: Option<usize>,
    /// By segment, hashed cheaply (not keyed): the keys are the config's, so a client choosing
    /// the segments it sends can make a lookup miss but cannot crowd the keys into one bucket.
    children: FastMap<Box<[u8]>, PrefixTree>,
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
