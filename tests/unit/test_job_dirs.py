"""A job's directory is the spare one made ahead when there is one, else a new one."""

import os
import stat

from warden_framework.jobs import SPARE_DIR, make_job_dir, prepare_spare


def test_without_a_spare_the_directory_is_made(tmp_path):
    path = make_job_dir(tmp_path / "jobs", 7)
    assert path == tmp_path / "jobs" / "7" and path.is_dir() and os.listdir(path) == []


def test_the_spare_becomes_the_next_jobs_directory_with_its_empty_outputs(tmp_path):
    jobs = tmp_path / "jobs"
    prepare_spare(jobs)
    spare_inode = (jobs / SPARE_DIR).stat().st_ino
    prepare_spare(jobs)  # already there: nothing changes
    assert (jobs / SPARE_DIR).stat().st_ino == spare_inode
    path = make_job_dir(jobs, 8)
    assert path.stat().st_ino == spare_inode and not (jobs / SPARE_DIR).exists()
    for name in ("stdout", "stderr", "exit_status"):
        st = (path / name).stat()
        assert st.st_size == 0 and stat.S_IMODE(st.st_mode) == 0o600
    assert make_job_dir(jobs, 9).stat().st_ino != spare_inode  # used once only
