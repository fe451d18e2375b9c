"""Mirror a remote Zarr store locally: the plan of what to fetch, and the fetch itself."""
