// The GraphQL operations the search page sends.

export const SEARCH = `
query Search($query: String!, $filter: SearchFilter, $orderBy: SearchOrder,
             $first: Int, $after: String, $last: Int, $before: String) {
  search(query: $query, filter: $filter, orderBy: $orderBy,
         first: $first, after: $after, last: $last, before: $before) {
    totalCount { value exact }
    pageInfo { hasNextPage hasPreviousPage startCursor endCursor }
    edges { node { pageNumber document { id } } }
    documents {
      id
      meetingName
      meetingDate
      documentType
      municipality { subdomain name state }
      matchingPages(query: $query, first: 3) {
        count
        edges { headline page { id pageNumber } }
      }
    }
  }
}`;

// "N more matching pages in this meeting": every matching page of one document (up to 100), in page order.
export const MORE_MATCHES = `
query MoreMatches($id: ID!, $query: String!) {
  node(id: $id) {
    ... on MeetingDocument {
      id
      matchingPages(query: $query, first: 100) {
        count
        edges { headline page { id pageNumber } }
      }
    }
  }
}`;

// Links of the earlier page view ("#page=<id>") lead to the document view at that page.
export const PAGE = `
query Page($id: ID!) {
  node(id: $id) {
    __typename
    ... on MeetingPage {
      pageNumber
      document { id }
    }
  }
}`;

export const MUNICIPALITIES = `
query Municipalities($after: String) {
  municipalities(first: 100, after: $after) {
    edges { node { subdomain name state } }
    pageInfo { hasNextPage endCursor }
  }
}`;
