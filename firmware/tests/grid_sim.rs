//! Grid device simulation test (placeholder created by the lead so the workspace manifest loads; replace freely).
