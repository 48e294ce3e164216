//! The hollow runtime: containers that exist only in memory (written next).
