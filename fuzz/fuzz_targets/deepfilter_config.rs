//! DeepFilterNet's config.ini: parsed into parameters the signal path can run (bins and bands
//! that fit the FFT, a deep filter no longer than it takes, smoothing below 1) or refused.
#![no_main]
use libfuzzer_sys::fuzz_target;
use meeting_agent::audio::deepfilter::{DfParams, MAX_ORDER};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(p) = DfParams::parse(text) {
        let freqs = p.fft_size / 2 + 1;
        assert!(p.hop_size * 2 == p.fft_size);
        assert!(p.nb_df <= freqs && p.nb_erb * p.min_nb_erb_freqs <= freqs);
        assert!(p.df_order <= MAX_ORDER && p.df_lookahead < p.df_order);
        assert!((0.0..1.0).contains(&p.norm_alpha));
        let bands = meeting_agent::audio::deepfilter::erb_bands(
            p.sample_rate,
            p.fft_size,
            p.nb_erb,
            p.min_nb_erb_freqs,
        );
        assert_eq!(bands.iter().sum::<usize>(), freqs);
    }
});
