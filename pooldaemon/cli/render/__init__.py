"""How poolctl shows the socket API's answers: rich tables and progress bars.

`table.py` draws (formats, `FitTable`); the views are grouped by area: `pools.py` (status,
pools, sync, queues, search), `jobs.py` (jobs, answers about jobs, watch), `library.py`
(library, duplicates, adopt, rules, exports). This package re-exports them for poolctl.
"""

from pooldaemon.cli.render.jobs import WatchView as WatchView
from pooldaemon.cli.render.jobs import job_line as job_line
from pooldaemon.cli.render.jobs import jobs_table as jobs_table
from pooldaemon.cli.render.jobs import submit_view as submit_view
from pooldaemon.cli.render.jobs import throttle_line as throttle_line
from pooldaemon.cli.render.library import adopt_view as adopt_view
from pooldaemon.cli.render.library import dupes_view as dupes_view
from pooldaemon.cli.render.library import export_view as export_view
from pooldaemon.cli.render.library import library_summary as library_summary
from pooldaemon.cli.render.library import library_table as library_table
from pooldaemon.cli.render.library import rule_test_table as rule_test_table
from pooldaemon.cli.render.library import rules_table as rules_table
from pooldaemon.cli.render.pools import pools_table as pools_table
from pooldaemon.cli.render.pools import queue_table as queue_table
from pooldaemon.cli.render.pools import search_table as search_table
from pooldaemon.cli.render.pools import status_view as status_view
from pooldaemon.cli.render.pools import sync_table as sync_table
from pooldaemon.cli.render.table import FitTable as FitTable
from pooldaemon.cli.render.table import fmt_ago as fmt_ago
from pooldaemon.cli.render.table import fmt_duration as fmt_duration
from pooldaemon.cli.render.table import fmt_rate as fmt_rate
from pooldaemon.cli.render.table import fmt_size as fmt_size
from pooldaemon.cli.render.table import wide_width as wide_width
