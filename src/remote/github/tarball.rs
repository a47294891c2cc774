//! Bulk download: the files of one commit from GitHub's tarball (`GET /repos/o/r/tarball/{sha}`),
//! so a first pull of thousands of items is a handful of requests instead of one per file.
