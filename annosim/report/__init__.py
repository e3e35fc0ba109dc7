"""Reports of results folders: statistics, tables, figures, QC images, HTML, paired comparison
and scoring of precomputed segmentations (README, Reports).

Entry points: :func:`annosim.report.build.build_report`,
:func:`annosim.report.compare.compare_runs`, :func:`annosim.engine.score.score_predictions`.
"""
