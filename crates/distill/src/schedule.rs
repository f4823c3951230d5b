//! Learning rate per step: linear warm-up, then linear, cosine or no decay.
//!
//! A pure function of the step, so a resumed run needs nothing but the step count to be back on schedule.

use crate::config::ScheduleKind;

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LrSchedule {
    pub peak: f64,
    pub warmup: usize,
    pub total: usize,
    pub kind: ScheduleKind,
    pub min_ratio: f64,
}

impl LrSchedule {
    /// Learning rate of optimizer step `step` (0-based). Warm-up goes `peak/warmup, 2 peak/warmup, ..., peak`
    /// (never 0, so no step is wasted); decay then reaches `peak * min_ratio` at the last step.
    pub fn lr(&self, step: usize) -> f64 {
        if step < self.warmup {
            return self.peak * (step + 1) as f64 / self.warmup as f64;
        }
        let span = self.total.saturating_sub(self.warmup).saturating_sub(1);
        let progress = if span == 0 {
            0.0
        } else {
            ((step - self.warmup) as f64 / span as f64).min(1.0)
        };
        let floor = self.peak * self.min_ratio;
        match self.kind {
            ScheduleKind::Constant => self.peak,
            ScheduleKind::Linear => floor + (self.peak - floor) * (1.0 - progress),
            ScheduleKind::Cosine => {
                floor + (self.peak - floor) * 0.5 * (1.0 + (std::f64::consts::PI * progress).cos())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn warmup_then_linear_decay() {
        let s = LrSchedule {
            peak: 1.0,
            warmup: 4,
            total: 14,
            kind: ScheduleKind::Linear,
            min_ratio: 0.0,
        };
        assert_eq!(s.lr(0), 0.25);
        assert_eq!(s.lr(3), 1.0);
        assert_eq!(s.lr(4), 1.0);
        assert!((s.lr(13) - 0.0).abs() < 1e-12);
        assert!(s.lr(8) < s.lr(7));
    }

    #[test]
    fn cosine_ends_at_floor() {
        let s = LrSchedule {
            peak: 2.0,
            warmup: 0,
            total: 11,
            kind: ScheduleKind::Cosine,
            min_ratio: 0.1,
        };
        assert!((s.lr(0) - 2.0).abs() < 1e-12);
        assert!((s.lr(5) - (0.2 + 1.8 * 0.5)).abs() < 1e-12);
        assert!((s.lr(10) - 0.2).abs() < 1e-12);
    }

    #[test]
    fn constant_after_warmup() {
        let s = LrSchedule {
            peak: 1.0,
            warmup: 2,
            total: 10,
            kind: ScheduleKind::Constant,
            min_ratio: 0.0,
        };
        assert_eq!(s.lr(0), 0.5);
        assert_eq!(s.lr(9), 1.0);
    }
}
