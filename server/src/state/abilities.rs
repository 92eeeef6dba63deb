//! A worker's registrations (CAN_DO) and the functions among them that may
//! have a job waiting, per priority, so a GRAB costs O(1) amortized
//! whatever the number of functions the worker registered.
//!
//! The ready lists are kept lazily: when a function's queue goes from empty
//! to non-empty, each of its workers gets the function appended (once: a
//! flag per priority); a GRAB takes the first entry, and drops entries
//! whose queue turned out empty or whose registration is gone. So every
//! function with waiting jobs is in the list of every worker registered for
//! it, and each entry is paid for by the event that added it.

use std::collections::VecDeque;

use crate::index::IntMap;

pub(crate) struct Ability {
    pub timeout_ms: u32,
    /// CAN_DO registrations of this function (duplicates are counted, as in
    /// gearmand's `status` and `workers`).
    pub count: u32,
    /// Registration order, for the `workers` listing.
    pub seq: u64,
    /// Index in the function's `workers` list.
    pub slot: usize,
    /// Has an entry in `ready[prio]`.
    listed: [bool; 3],
}

#[derive(Default)]
pub(crate) struct Abilities {
    by_func: IntMap<u32, Ability>,
    ready: [VecDeque<u32>; 3],
    next_seq: u64,
}

impl Abilities {
    pub(crate) fn get(&self, fid: u32) -> Option<&Ability> {
        self.by_func.get(&fid)
    }

    pub(crate) fn get_mut(&mut self, fid: u32) -> Option<&mut Ability> {
        self.by_func.get_mut(&fid)
    }

    /// How many functions are registered.
    pub(crate) fn len(&self) -> usize {
        self.by_func.len()
    }

    /// Whether no function is registered.
    pub(crate) fn is_empty(&self) -> bool {
        self.by_func.is_empty()
    }

    /// The registered functions, in no particular order.
    pub(crate) fn funcs(&self) -> impl Iterator<Item = u32> + '_ {
        self.by_func.keys().copied()
    }

    /// The registrations, oldest first.
    pub(crate) fn in_order(&self) -> Vec<(u32, &Ability)> {
        let mut v: Vec<_> = self.by_func.iter().map(|(&f, a)| (f, a)).collect();
        v.sort_unstable_by_key(|(_, a)| a.seq);
        v
    }

    /// Registers function `fid` (new, so `slot` is its place in the
    /// function's worker list).
    pub(crate) fn insert(&mut self, fid: u32, timeout_ms: u32, slot: usize) {
        let seq = self.next_seq;
        self.next_seq += 1;
        self.by_func.insert(
            fid,
            Ability {
                timeout_ms,
                count: 1,
                seq,
                slot,
                listed: [false; 3],
            },
        );
    }

    /// Unregisters function `fid`; its ready entries become stale.
    pub(crate) fn remove(&mut self, fid: u32) -> Option<Ability> {
        let a = self.by_func.remove(&fid);
        crate::index::shrink(&mut self.by_func);
        a
    }

    /// Unregisters every function.
    pub(crate) fn take_all(&mut self) -> Vec<(u32, Ability)> {
        for r in &mut self.ready {
            *r = VecDeque::new();
        }
        std::mem::take(&mut self.by_func).into_iter().collect()
    }

    /// Whether function `fid` is in the ready list of priority `prio`.
    #[cfg(feature = "fuzzing")]
    pub(crate) fn is_listed(&self, fid: u32, prio: usize) -> bool {
        self.by_func.get(&fid).is_some_and(|a| a.listed[prio]) && self.ready[prio].contains(&fid)
    }

    /// Function `fid` may have jobs of priority `prio` waiting.
    pub(crate) fn mark_ready(&mut self, fid: u32, prio: usize) {
        let Some(a) = self.by_func.get_mut(&fid) else {
            return;
        };
        if a.listed[prio] {
            return;
        }
        a.listed[prio] = true;
        let q = &mut self.ready[prio];
        q.push_back(fid);
        if q.len() > 2 * self.by_func.len() + 32 {
            self.compact(prio);
        }
    }

    /// The first function listed ready at `prio` (maybe with an empty queue).
    pub(crate) fn first_ready(&mut self, prio: usize) -> Option<u32> {
        loop {
            let &fid = self.ready[prio].front()?;
            if self.by_func.contains_key(&fid) {
                return Some(fid);
            }
            self.ready[prio].pop_front(); // registration gone
        }
    }

    /// The first ready function had no job after all: unlist it.
    pub(crate) fn unlist_first(&mut self, prio: usize) {
        if let Some(fid) = self.ready[prio].pop_front() {
            if let Some(a) = self.by_func.get_mut(&fid) {
                a.listed[prio] = false;
            }
        }
    }

    /// A job was taken from the first ready function, which has more:
    /// move it to the back (functions take turns).
    pub(crate) fn rotate_first(&mut self, prio: usize) {
        if let Some(fid) = self.ready[prio].pop_front() {
            self.ready[prio].push_back(fid);
        }
    }

    /// Drops stale and duplicate entries (left by CANT_DO then CAN_DO).
    fn compact(&mut self, prio: usize) {
        let by_func = &mut self.by_func;
        for a in by_func.values_mut() {
            a.listed[prio] = false;
        }
        self.ready[prio].retain(|fid| match by_func.get_mut(fid) {
            Some(a) if !a.listed[prio] => {
                a.listed[prio] = true;
                true
            }
            _ => false,
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ready_entries_are_listed_once_and_survive_re_registration_bounded() {
        let mut a = Abilities::default();
        a.insert(7, 0, 0);
        a.mark_ready(7, 1);
        a.mark_ready(7, 1);
        assert_eq!(a.ready[1].len(), 1);
        for _ in 0..1000 {
            a.remove(7);
            a.insert(7, 0, 0);
            a.mark_ready(7, 1);
        }
        assert!(a.ready[1].len() <= 2 * a.len() + 32);
        assert_eq!(a.first_ready(1), Some(7));
        a.unlist_first(1);
        a.remove(7);
        assert_eq!(a.first_ready(1), None, "stale entries are skipped");
    }
}
