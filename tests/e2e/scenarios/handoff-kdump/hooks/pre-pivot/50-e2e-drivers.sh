# The capture kernel's drivers bound and work after restore; a plain copy of the dump headers.
handoff_drivers_work
stage drivers-checked
