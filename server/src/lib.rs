//! polygear-server: the job server library behind `polygeard`.
