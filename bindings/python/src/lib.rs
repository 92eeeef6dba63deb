//! PyO3 glue for the `polygear` Python package.
