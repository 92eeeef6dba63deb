//! The function table: one [`Function`] per name a client, worker or admin
//! used, found by name in O(1), with its queues and counters.
//!
//! Functions stay listed while idle (no job, no worker), as in gearmand,
//! so monitoring reads "0 workers" from `status`; but only the
//! `max_idle` most recently used idle ones are kept (the longest-idle are
//! forgotten first), so a stream of distinct names cannot grow memory
//! forever. Forgotten and dropped slots are reused.

use std::collections::{HashMap, VecDeque};

use bytes::Bytes;

use super::ConnId;

pub(crate) struct Function {
    pub name: Bytes,
    pub queues: [VecDeque<u64>; 3],
    /// Jobs not running, per priority (including abandoned ones not yet reaped).
    pub waiting: [u64; 3],
    pub total: u64,
    pub running: u64,
    /// The connections registered for this function, once each; a worker's
    /// [`Ability::slot`](super::abilities::Ability) is its index here.
    pub workers: Vec<ConnId>,
    /// CAN_DO registrations, duplicates counted (gearmand's `status` column).
    pub registrations: u64,
    pub wake_pos: usize,
    pub maxqueue: [u32; 3],
    pub alive: bool,
    /// Paused (admin `pause`): its jobs queue but none is handed out.
    pub paused: bool,
    /// Counters and histograms for `/metrics` (see [`crate::stats`]).
    pub stats: crate::stats::FuncStats,
    /// Non-zero while idle: its entry in the idle queue.
    idle_stamp: u64,
}

impl Function {
    fn new(name: Bytes) -> Function {
        Function {
            name,
            queues: Default::default(),
            waiting: [0; 3],
            total: 0,
            running: 0,
            workers: Vec::new(),
            registrations: 0,
            wake_pos: 0,
            maxqueue: [0; 3],
            alive: true,
            paused: false,
            stats: Default::default(),
            idle_stamp: 0,
        }
    }

    /// Nothing refers to it: no job, no worker, no setting to keep.
    pub(crate) fn is_idle(&self) -> bool {
        self.alive
            && self.total == 0
            && self.workers.is_empty()
            && self.maxqueue == [0; 3]
            && !self.paused
    }
}

pub(crate) struct Functions {
    list: Vec<Function>,
    ids: HashMap<Bytes, u32>,
    /// ASCII-lowercased name → (a function with that name, how many
    /// names fold to it), for the case-insensitive `drop function`
    /// (gearmand's match).
    folded: HashMap<Bytes, (u32, u32)>,
    free: Vec<u32>,
    /// Idle functions, longest idle first, as (id, stamp); an entry whose
    /// stamp no longer matches the function's is stale and skipped.
    idle: VecDeque<(u32, u64)>,
    idle_count: usize,
    next_stamp: u64,
    /// Idle functions kept (0 = no limit).
    max_idle: usize,
}

fn fold(name: &Bytes) -> Bytes {
    if name.iter().any(u8::is_ascii_uppercase) {
        Bytes::from(name.to_ascii_lowercase())
    } else {
        name.clone()
    }
}

impl Functions {
    pub(crate) fn new(max_idle: usize) -> Functions {
        Functions {
            list: Vec::new(),
            ids: HashMap::new(),
            folded: HashMap::new(),
            free: Vec::new(),
            idle: VecDeque::new(),
            idle_count: 0,
            next_stamp: 1,
            max_idle,
        }
    }

    /// The id of function `name`, created if unknown.
    pub(crate) fn id(&mut self, name: &[u8]) -> u32 {
        if let Some(&id) = self.ids.get(name) {
            return id;
        }
        let name = Bytes::copy_from_slice(name);
        let f = Function::new(name.clone());
        let id = match self.free.pop() {
            Some(id) => {
                self.list[id as usize] = f;
                id
            }
            None => {
                self.list.push(f);
                (self.list.len() - 1) as u32
            }
        };
        self.folded.entry(fold(&name)).or_insert((id, 0)).1 += 1;
        self.ids.insert(name, id);
        self.touch(id);
        id
    }

    /// The id of function `name`, if known.
    pub(crate) fn find(&self, name: &[u8]) -> Option<u32> {
        self.ids.get(name).copied()
    }

    /// Finds a function by name, ignoring ASCII case (exact match preferred).
    pub(crate) fn find_ignore_case(&self, name: &[u8]) -> Option<u32> {
        self.find(name)
            .or_else(|| self.folded.get(&name.to_ascii_lowercase()[..]).map(|e| e.0))
    }

    /// The known functions (in id order).
    pub(crate) fn iter(&self) -> impl Iterator<Item = &Function> {
        self.list.iter().filter(|f| f.alive)
    }

    /// Every slot with its id, forgotten ones included (for checks).
    #[cfg(feature = "fuzzing")]
    pub(crate) fn all(&self) -> impl Iterator<Item = (u32, &Function)> {
        self.list.iter().enumerate().map(|(i, f)| (i as u32, f))
    }

    /// The function in slot `fid`, if the slot exists (alive or not).
    #[cfg(feature = "fuzzing")]
    pub(crate) fn get(&self, fid: u32) -> Option<&Function> {
        self.list.get(fid as usize)
    }

    /// Ids below this may be in use (for scans over the table).
    pub(crate) fn slots(&self) -> u32 {
        self.list.len() as u32
    }

    /// How many functions are known.
    pub(crate) fn len(&self) -> usize {
        self.ids.len()
    }

    /// Records whether `fid` became idle or busy; call after changing its
    /// jobs, workers or settings.
    pub(crate) fn touch(&mut self, fid: u32) {
        let f = &mut self.list[fid as usize];
        match (f.is_idle(), f.idle_stamp != 0) {
            (true, false) => {
                let stamp = self.next_stamp;
                self.next_stamp += 1;
                f.idle_stamp = stamp;
                self.idle.push_back((fid, stamp));
                self.idle_count += 1;
                if self.idle.len() > 2 * self.idle_count + 1024 {
                    let list = &self.list;
                    self.idle
                        .retain(|&(id, s)| list[id as usize].idle_stamp == s);
                }
            }
            (false, true) => {
                f.idle_stamp = 0;
                self.idle_count -= 1;
            }
            _ => {}
        }
    }

    /// Forgets the longest-idle functions beyond `max_idle`; returns how many.
    pub(crate) fn forget_idle(&mut self) -> usize {
        let mut n = 0;
        while self.max_idle > 0 && self.idle_count > self.max_idle {
            let Some((fid, stamp)) = self.idle.pop_front() else {
                break;
            };
            if self.list[fid as usize].idle_stamp == stamp {
                self.remove(fid);
                n += 1;
            }
        }
        n
    }

    /// Forgets function `fid` (which must be idle or empty) and frees its slot.
    pub(crate) fn remove(&mut self, fid: u32) {
        let f = &mut self.list[fid as usize];
        if !f.alive {
            return;
        }
        if f.idle_stamp != 0 {
            f.idle_stamp = 0;
            self.idle_count -= 1;
        }
        let name = std::mem::take(&mut f.name);
        *f = Function::new(Bytes::new());
        f.alive = false;
        self.ids.remove(&name);
        let folded = fold(&name);
        if let Some(entry) = self.folded.get_mut(&folded) {
            entry.1 -= 1;
            if entry.1 == 0 {
                self.folded.remove(&folded);
            } else if entry.0 == fid {
                // Another name differing only in case takes the entry (rare: a scan).
                if let Some(&id) = self
                    .ids
                    .iter()
                    .find(|(n, _)| n.eq_ignore_ascii_case(&folded))
                    .map(|(_, id)| id)
                {
                    entry.0 = id;
                }
            }
        }
        self.free.push(fid);
    }
}

impl std::ops::Index<u32> for Functions {
    type Output = Function;
    fn index(&self, fid: u32) -> &Function {
        &self.list[fid as usize]
    }
}

impl std::ops::IndexMut<u32> for Functions {
    fn index_mut(&mut self, fid: u32) -> &mut Function {
        &mut self.list[fid as usize]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forgets_the_longest_idle_beyond_the_limit_and_reuses_slots() {
        let mut fs = Functions::new(2);
        let a = fs.id(b"a");
        let b = fs.id(b"b");
        fs[a].total = 1; // busy
        fs.touch(a);
        let c = fs.id(b"c");
        assert_eq!(fs.forget_idle(), 0, "b and c idle: at the limit");
        let d = fs.id(b"d");
        assert_eq!(fs.forget_idle(), 1);
        assert_eq!(fs.find(b"b"), None, "b was idle longest");
        assert_eq!(fs.find(b"a"), Some(a), "busy functions stay");
        assert_eq!(fs.find(b"c"), Some(c));
        assert_eq!(fs.find(b"d"), Some(d));
        assert_eq!(fs.id(b"e"), b, "b's slot is reused");
        assert_eq!(fs.len(), 4);
    }

    #[test]
    fn drop_by_name_ignores_case_and_prefers_the_exact_name() {
        let mut fs = Functions::new(0);
        let upper = fs.id(b"Resize");
        let lower = fs.id(b"resize");
        assert_eq!(fs.find_ignore_case(b"resize"), Some(lower));
        assert_eq!(fs.find_ignore_case(b"RESIZE"), Some(upper));
        fs.remove(upper);
        assert_eq!(fs.find_ignore_case(b"RESIZE"), Some(lower));
        fs.remove(lower);
        assert_eq!(fs.find_ignore_case(b"RESIZE"), None);
        assert_eq!(fs.iter().count(), 0);
    }

    #[test]
    fn idle_churn_keeps_the_idle_queue_bounded() {
        let mut fs = Functions::new(0);
        let a = fs.id(b"a");
        for _ in 0..100_000 {
            fs[a].total = 1;
            fs.touch(a);
            fs[a].total = 0;
            fs.touch(a);
        }
        assert!(fs.idle.len() <= 2 * fs.idle_count + 1025);
    }
}
