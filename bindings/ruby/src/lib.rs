//! magnus glue for the `polygear` Ruby gem.
