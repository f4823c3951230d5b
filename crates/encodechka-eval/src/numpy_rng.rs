//! numpy's legacy `RandomState` (MT19937), bit for bit.
//!
//! encodechka's splits (`train_test_split`, shuffled `KFold`) and the SGD classifier's per-class seeds all
//! come from `np.random.RandomState(seed)`. Reproducing the exact stream is what makes the Rust scores equal
//! to the Python ones rather than merely close, so this mirrors numpy's C code paths: `mt19937_seed`,
//! `random_bounded_uint64_fill` with the masked rejection sampler, and `random_interval` for shuffles.

const N: usize = 624;
const M: usize = 397;
const MATRIX_A: u32 = 0x9908_b0df;
const UPPER_MASK: u32 = 0x8000_0000;
const LOWER_MASK: u32 = 0x7fff_ffff;

/// `np.random.RandomState(seed)` for an integer seed.
#[derive(Clone)]
pub struct RandomState {
    key: [u32; N],
    pos: usize,
}

impl RandomState {
    /// Knuth's initialisation (`init_genrand`), which numpy uses for integer seeds.
    pub fn new(seed: u32) -> Self {
        let mut key = [0u32; N];
        key[0] = seed;
        for i in 1..N {
            let prev = key[i - 1];
            key[i] = 1_812_433_253u32
                .wrapping_mul(prev ^ (prev >> 30))
                .wrapping_add(i as u32);
        }
        Self { key, pos: N }
    }

    fn generate(&mut self) {
        for i in 0..N {
            let y = (self.key[i] & UPPER_MASK) | (self.key[(i + 1) % N] & LOWER_MASK);
            let mut v = self.key[(i + M) % N] ^ (y >> 1);
            if y & 1 == 1 {
                v ^= MATRIX_A;
            }
            self.key[i] = v;
        }
        self.pos = 0;
    }

    /// One tempered 32-bit output.
    pub fn next_u32(&mut self) -> u32 {
        if self.pos >= N {
            self.generate();
        }
        let mut y = self.key[self.pos];
        self.pos += 1;
        y ^= y >> 11;
        y ^= (y << 7) & 0x9d2c_5680;
        y ^= (y << 15) & 0xefc6_0000;
        y ^= y >> 18;
        y
    }

    /// `randint(low, high)` (exclusive high) for ranges that fit in 32 bits, numpy's masked sampler.
    pub fn randint(&mut self, low: i64, high: i64) -> i64 {
        assert!(high > low, "randint: empty range [{low}, {high})");
        let rng = (high - low - 1) as u64;
        assert!(
            rng <= u32::MAX as u64,
            "randint: only 32-bit ranges are reproduced"
        );
        if rng == 0 {
            return low;
        }
        let mask = smallest_mask(rng) as u32;
        loop {
            let v = self.next_u32() & mask;
            if v as u64 <= rng {
                return low + v as i64;
            }
        }
    }

    /// `random_interval(max)`: a uniform integer in `[0, max]` (used by `shuffle`).
    fn interval(&mut self, max: u64) -> u64 {
        if max == 0 {
            return 0;
        }
        assert!(
            max <= u32::MAX as u64,
            "interval: only 32-bit ranges are reproduced"
        );
        let mask = smallest_mask(max) as u32;
        loop {
            let v = (self.next_u32() & mask) as u64;
            if v <= max {
                return v;
            }
        }
    }

    /// `shuffle(x)` for a 1-d array: Fisher-Yates from the end.
    pub fn shuffle<T>(&mut self, items: &mut [T]) {
        for i in (1..items.len()).rev() {
            let j = self.interval(i as u64) as usize;
            items.swap(i, j);
        }
    }

    /// `permutation(n)`.
    pub fn permutation(&mut self, n: usize) -> Vec<usize> {
        let mut v: Vec<usize> = (0..n).collect();
        self.shuffle(&mut v);
        v
    }
}

fn smallest_mask(max: u64) -> u64 {
    let mut mask = max;
    mask |= mask >> 1;
    mask |= mask >> 2;
    mask |= mask >> 4;
    mask |= mask >> 8;
    mask |= mask >> 16;
    mask |= mask >> 32;
    mask
}

#[cfg(test)]
mod tests {
    use super::*;

    // Values printed by numpy 2.4 (`np.random.RandomState(...)`), see the test names.
    #[test]
    fn raw_stream_matches_numpy() {
        // np.random.RandomState(5489).randint(0, 2**32, size=3, dtype=np.uint64) draws whole words (the
        // classic MT19937 reference output).
        let mut rs = RandomState::new(5489);
        assert_eq!(
            [rs.next_u32(), rs.next_u32(), rs.next_u32()],
            [3_499_211_612, 581_869_302, 3_890_346_734]
        );
    }

    #[test]
    fn randint_and_permutation_match_numpy() {
        // np.random.RandomState(1).randint(2**31 - 1, size=4)
        let mut rs = RandomState::new(1);
        let got: Vec<i64> = (0..4).map(|_| rs.randint(0, i32::MAX as i64)).collect();
        assert_eq!(got, NUMPY_RANDINT_SEED1);
        // np.random.RandomState(1).permutation(10)
        let mut rs = RandomState::new(1);
        assert_eq!(rs.permutation(10), NUMPY_PERMUTATION_SEED1);
        // rs = RandomState(12345); rs.randint(1, 2**31-1), rs.randint(2**31-1), rs.randint(7), rs.randint(1000)
        let mut rs = RandomState::new(12345);
        let got = [
            rs.randint(1, i32::MAX as i64),
            rs.randint(0, i32::MAX as i64),
            rs.randint(0, 7),
            rs.randint(0, 1000),
        ];
        assert_eq!(got, [1_845_187_043, 1_675_701_733, 5, 129]);
        // RandomState(7).permutation(1000)[:8]
        assert_eq!(
            RandomState::new(7).permutation(1000)[..8],
            [778, 334, 271, 802, 216, 408, 812, 94]
        );
    }

    const NUMPY_RANDINT_SEED1: [i64; 4] =
        [1_791_095_845, 2_135_392_491, 946_286_476, 1_857_819_720];
    const NUMPY_PERMUTATION_SEED1: [usize; 10] = [2, 9, 6, 4, 0, 3, 1, 7, 8, 5];
}
