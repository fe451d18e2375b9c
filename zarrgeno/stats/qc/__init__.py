"""Population-genetics QC statistics (plink2 ``--freq``, ``--geno-counts``, ``--hardy``, ``--het``,
``--missing``) as declared fields over additive partial counts: pure, no I/O of stores."""
