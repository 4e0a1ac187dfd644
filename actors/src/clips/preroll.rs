//! The last seconds of a camera's compressed stream, kept so that a clip can start before the
//! moment that asked for it.

use std::collections::VecDeque;

use super::Packet;

/// The newest packets of a stream, always starting at a keyframe (a clip must start with one),
/// spanning at least `seconds` when the stream allows and never more bytes than `max_bytes`:
/// whole groups of pictures are dropped from the front as newer ones arrive.
#[derive(Debug)]
pub struct PreRoll {
    seconds: f64,
    max_bytes: usize,
    packets: VecDeque<Packet>,
    bytes: usize,
}

impl PreRoll {
    /// An empty buffer keeping `seconds` of stream in at most `max_bytes`.
    pub fn new(seconds: f64, max_bytes: usize) -> Self {
        Self {
            seconds: seconds.max(0.0),
            max_bytes,
            packets: VecDeque::new(),
            bytes: 0,
        }
    }

    /// Adds the newest packet. A packet that is not a keyframe is dropped while the buffer is
    /// empty.
    pub fn push(&mut self, packet: Packet) {
        if self.packets.is_empty() && !packet.keyframe {
            return;
        }
        self.bytes += packet.data.len();
        self.packets.push_back(packet);
        let newest = self.packets.back().map_or(0.0, |p| p.t);
        // Drop the oldest group of pictures while the next one still reaches back far enough,
        // or while the buffer holds too much.
        while let Some(next) = self.second_keyframe() {
            let long_enough = newest - self.packets[next].t >= self.seconds;
            if !(long_enough || self.bytes > self.max_bytes) {
                break;
            }
            for dropped in self.packets.drain(..next) {
                self.bytes -= dropped.data.len();
            }
        }
        if self.bytes > self.max_bytes {
            // One group of pictures larger than the budget: start again at the next keyframe.
            self.clear();
        }
    }

    fn second_keyframe(&self) -> Option<usize> {
        self.packets
            .iter()
            .enumerate()
            .skip(1)
            .find(|(_, p)| p.keyframe)
            .map(|(i, _)| i)
    }

    /// The packets held, oldest (a keyframe) first.
    pub fn packets(&self) -> impl Iterator<Item = &Packet> {
        self.packets.iter()
    }

    /// Bytes held.
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// Seconds of stream held (first to last packet).
    pub fn span(&self) -> f64 {
        match (self.packets.front(), self.packets.back()) {
            (Some(first), Some(last)) => last.t - first.t,
            _ => 0.0,
        }
    }

    /// Forgets every packet (the stream was interrupted or changed format).
    pub fn clear(&mut self) {
        self.packets.clear();
        self.bytes = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A 10 fps stream with a keyframe every `gop` packets, `size` bytes each.
    fn stream(n: usize, gop: usize, size: usize) -> impl Iterator<Item = Packet> {
        (0..n).map(move |i| Packet::at_seconds(vec![0; size], i as f64 / 10.0, i % gop == 0))
    }

    #[test]
    fn it_keeps_at_least_its_seconds_from_a_keyframe() {
        let mut pre = PreRoll::new(3.0, usize::MAX);
        for p in stream(100, 20, 10) {
            pre.push(p);
            let first = pre.packets().next().unwrap();
            assert!(first.keyframe, "starts at a keyframe");
        }
        // Keyframes at 0, 2, 4, 6, 8 s; the newest packet is at 9.9 s: the group from 6 s is
        // the latest reaching 3 s back.
        assert_eq!(pre.packets().next().unwrap().t, 6.0);
        assert!((pre.span() - 3.9).abs() < 1e-9);
        assert_eq!(pre.bytes(), 40 * 10);
    }

    #[test]
    fn it_never_holds_more_than_its_bytes() {
        let mut pre = PreRoll::new(10.0, 250);
        for p in stream(100, 10, 10) {
            pre.push(p);
            assert!(pre.bytes() <= 250, "{} bytes", pre.bytes());
        }
        // Groups of 100 bytes: two fit beside the newest packets.
        assert!(pre.packets().next().unwrap().keyframe);
        assert!(pre.bytes() >= 100);
    }

    #[test]
    fn a_group_larger_than_the_budget_starts_over_at_the_next_keyframe() {
        let mut pre = PreRoll::new(10.0, 50);
        for p in stream(15, 10, 10) {
            pre.push(p);
        }
        // 0..=9 overflowed at the sixth packet and nothing was kept until the keyframe at 10.
        assert_eq!(pre.packets().next().unwrap().t, 1.0);
        assert_eq!(pre.bytes(), 50);
    }

    #[test]
    fn packets_before_the_first_keyframe_are_not_kept() {
        let mut pre = PreRoll::new(10.0, usize::MAX);
        pre.push(Packet::at_seconds(vec![1], 0.0, false));
        assert_eq!(pre.bytes(), 0);
        pre.push(Packet::at_seconds(vec![1], 0.1, true));
        assert_eq!(pre.bytes(), 1);
    }
}
