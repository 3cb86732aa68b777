//! The names of each bucket's metadata and digest keys, built the first time a request needs
//! them and shared by every later request on the bucket. Built per request they cost six
//! allocations and three `format!`s on every read and write (issue 16); kept, a bucket costs
//! about 300 bytes once (a few MB with every slot of a `slot` layout in use).

use quorumd_core::layout::Layout;
use std::sync::{Arc, OnceLock};

/// The shared names of one bucket's keys.
pub(super) struct BucketNames {
    /// One metadata hash per sub-bucket.
    pub meta: Box<[Arc<str>]>,
    pub digest: Arc<str>,
    pub sub_digest: Arc<str>,
}

pub(super) struct KeyNames {
    layout: Layout,
    buckets: Box<[OnceLock<BucketNames>]>,
}

impl KeyNames {
    pub fn new(layout: &Layout) -> KeyNames {
        KeyNames {
            layout: layout.clone(),
            buckets: (0..layout.buckets).map(|_| OnceLock::new()).collect(),
        }
    }

    /// The names of `bucket`'s keys (`bucket` < the layout's bucket count, as placement
    /// guarantees).
    pub fn of(&self, bucket: u32) -> &BucketNames {
        self.buckets[bucket as usize].get_or_init(|| BucketNames {
            meta: (0..self.layout.sub_buckets)
                .map(|sub| Arc::from(self.layout.meta_key(bucket, sub)))
                .collect(),
            digest: Arc::from(self.layout.digest_key(bucket)),
            sub_digest: Arc::from(self.layout.sub_digest_key(bucket)),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use quorumd_core::layout::Scheme;

    #[test]
    fn names_are_the_layouts_and_made_once() {
        for (scheme, buckets) in [(Scheme::Xxh3, 4096), (Scheme::Slot, 16_384)] {
            let layout = Layout {
                prefix: "qd:".into(),
                scheme,
                buckets,
                sub_buckets: 4,
            };
            check(&layout);
        }
    }

    fn check(layout: &Layout) {
        let names = KeyNames::new(layout);
        for bucket in [0, layout.buckets - 1] {
            let b = names.of(bucket);
            assert_eq!(b.meta.len(), layout.sub_buckets as usize);
            for (sub, name) in b.meta.iter().enumerate() {
                assert_eq!(&**name, layout.meta_key(bucket, sub as u32));
            }
            assert_eq!(&*b.digest, layout.digest_key(bucket));
            assert_eq!(&*b.sub_digest, layout.sub_digest_key(bucket));
            assert!(Arc::ptr_eq(&b.digest, &names.of(bucket).digest), "shared");
        }
    }
}
