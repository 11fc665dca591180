// One page of a meeting document, as a search result shows it.
import { graphql } from 'relay-runtime';

export const pageCardFragment = graphql`
  fragment PageCard_page on MeetingPage {
    id
    sourceId
    pageNumber
    pageImage
    document {
      ...DocumentLine_document
    }
  }
`;
