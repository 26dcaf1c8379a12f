// strand concat: per-contig VCFs, in reference order, into one indexed VCF
// (.tbi, or .csi when a record lies past 2^29).
process STRAND_CONCAT {
    tag "${meta.id}"
    label 'process_single'

    input:
    tuple val(meta), path(vcfs)

    output:
    tuple val(meta), path("${meta.id}.scored.vcf.gz"), path("${meta.id}.scored.vcf.gz.{tbi,csi}"), emit: vcf
    path "versions.yml", emit: versions

    when:
    task.ext.when == null || task.ext.when

    script:
    """
    strand concat \\
        -o ${meta.id}.scored.vcf.gz \\
        ${vcfs.join(' ')}

    cat <<-END_VERSIONS > versions.yml
    "${task.process}":
        strand: \$(strand --version | sed 's/^strand //')
    END_VERSIONS
    """
}
